//! Resource limits: iocage's limit properties (`memoryuse=8G:log`) as the
//! runtimes take them. FreeBSD turns each into an rctl rule; Linux maps
//! the few that cgroup v2 can enforce.

use serde::{Deserialize, Serialize};

/// One limit: `resource` is iocage's (and rctl's) name, `amount` as
/// written (`8G`, `50`), `action` `deny`, `log`, `devctl` or `sig<name>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limit {
    pub resource: String,
    pub amount: String,
    pub action: String,
}

impl Limit {
    /// Parses a limit property's value; `None` for `off`.
    pub fn parse(resource: &str, value: &str) -> Result<Option<Limit>, String> {
        if value == "off" {
            return Ok(None);
        }
        let (amount, action) =
            value.split_once(':').ok_or_else(|| format!("{resource}={value}: expected <amount>:<action> or off"))?;
        let n = amount_value(amount).ok_or_else(|| format!("{resource}={value}: {amount:?} is not an amount"))?;
        let max = max_amount(resource);
        if n > max {
            return Err(format!("{resource}={value}: at most {max}"));
        }
        Ok(Some(Limit { resource: resource.into(), amount: amount.into(), action: action.into() }))
    }

    /// The amount as a number: sizes with K/M/G/T/P suffixes are powers of
    /// 1024 (as rctl reads them); `%` is dropped.
    pub fn value(&self) -> u64 {
        amount_value(&self.amount).unwrap_or(0)
    }

    /// The rctl rule for a jail: `jail:<name>:<resource>:<action>=<amount>`.
    pub fn rctl_rule(&self, jail: &str) -> String {
        format!("jail:{jail}:{}:{}={}", self.resource, self.action, self.amount.trim_end_matches('%'))
    }
}

impl std::fmt::Display for Limit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}={}:{}", self.resource, self.amount, self.action)
    }
}

/// The largest amount a limit may have: what rctl keeps (a signed 64-bit
/// number), and for `pcpu` 100 per CPU for 1024 CPUs, so that what the
/// runtimes compute from it (cgroup v2's `cpu.max` is pcpu × 1000 µs per
/// 100 ms) cannot overflow.
pub fn max_amount(resource: &str) -> u64 {
    match resource {
        "pcpu" => 100 * 1024,
        _ => i64::MAX as u64,
    }
}

/// The limit in force on `resource` for jail `jail`, from RCTL's rules as
/// `rctl_get_limits` gives them (`jail:<name>:<resource>:<action>=<amount>`,
/// amounts in full): the smallest `deny` amount, which the kernel enforces
/// (`log`, `devctl`, `throttle` and signals only report or slow). Rules of
/// other subjects, per-process ones (`=<amount>/process`) and rules that do
/// not parse are not the jail's limit.
#[cfg_attr(not(target_os = "freebsd"), allow(dead_code))]
pub fn denied(rules: &[String], jail: &str, resource: &str) -> Option<u64> {
    let prefix = format!("jail:{jail}:{resource}:deny=");
    rules.iter().filter_map(|r| r.strip_prefix(&prefix)?.parse::<u64>().ok()).min()
}

fn amount_value(s: &str) -> Option<u64> {
    let s = s.trim_end_matches('%');
    let (digits, shift) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 10),
        'm' | 'M' => (&s[..s.len() - 1], 20),
        'g' | 'G' => (&s[..s.len() - 1], 30),
        't' | 'T' => (&s[..s.len() - 1], 40),
        'p' | 'P' => (&s[..s.len() - 1], 50),
        _ => (s, 0),
    };
    digits.parse::<u64>().ok()?.checked_mul(1u64 << shift)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_jail_s_own_deny_rule_is_its_limit() {
        let rules: Vec<String> = [
            "jail:ioc-a:memoryuse:log=1073741824",
            "jail:ioc-a:memoryuse:deny=134217728",
            "jail:ioc-a:memoryuse:deny=268435456",
            "jail:ioc-ab:maxproc:deny=5",
            "jail:ioc-a:maxproc:deny=50/process",
            "jail:ioc-a:maxproc:sigkill=40",
            "user:root:maxproc:deny=7",
        ]
        .map(String::from)
        .into();
        assert_eq!(denied(&rules, "ioc-a", "memoryuse"), Some(134217728));
        // Another jail's (a prefix of the name), a per-process amount, a
        // signal, another subject: none is ioc-a's process limit.
        assert_eq!(denied(&rules, "ioc-a", "maxproc"), None);
        assert_eq!(denied(&rules, "ioc-ab", "maxproc"), Some(5));
        assert_eq!(denied(&[], "ioc-a", "memoryuse"), None);
    }

    #[test]
    fn limits_parse_into_rctl_rules() {
        let l = Limit::parse("memoryuse", "8G:log").unwrap().unwrap();
        assert_eq!(l.value(), 8 << 30);
        assert_eq!(l.rctl_rule("ioc-x"), "jail:ioc-x:memoryuse:log=8G");
        assert_eq!(Limit::parse("pcpu", "50%:deny").unwrap().unwrap().rctl_rule("j"), "jail:j:pcpu:deny=50");
        assert_eq!(Limit::parse("maxproc", "off").unwrap(), None);
        assert!(Limit::parse("maxproc", "12").unwrap_err().contains("maxproc=12"));
        assert!(Limit::parse("maxproc", "x:deny").is_err());
        assert!(Limit::parse("memoryuse", "99999999P:deny").is_err(), "overflow is refused");
        assert!(Limit::parse("memoryuse", "8192P:deny").is_err(), "past rctl's int64");
        assert!(Limit::parse("memoryuse", "8192P:deny").unwrap_err().contains("at most"));
        assert!(Limit::parse("pcpu", "99999999999999999:deny").is_err(), "pcpu past 1024 CPUs");
        assert_eq!(Limit::parse("pcpu", "102400:deny").unwrap().unwrap().value(), 102_400);
    }
}
