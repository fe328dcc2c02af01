//! Names iocaged makes: jail UUIDs, iocage's default tag (the creation
//! time, `%F@%T`), and the `last_started` format (`%F_%T`). Names that come
//! from clients are checked by the property formats (`props`).

use std::io::Read;
use std::time::{SystemTime, UNIX_EPOCH};

/// A random (version 4) UUID from the OS's random source.
pub fn new_uuid() -> std::io::Result<String> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
    Ok(format!("{}-{}-{}-{}-{}", &h[0..8], &h[8..12], &h[12..16], &h[16..20], &h[20..32]))
}

/// Civil date and time (UTC) of a Unix time: (y, m, d, H, M, S).
fn civil(secs: u64) -> (i64, u32, u32, u32, u32, u32) {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-from-civil inverse.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, (rem / 3600) as u32, (rem % 3600 / 60) as u32, (rem % 60) as u32)
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn format(secs: u64, sep: char) -> String {
    let (y, mo, d, h, mi, s) = civil(secs);
    format!("{y:04}-{mo:02}-{d:02}{sep}{h:02}:{mi:02}:{s:02}")
}

/// iocage's default tag: the creation time, `2016-01-29@14:19:49` (UTC).
pub fn date_tag() -> String {
    format(now_secs(), '@')
}

/// A UTC time in RFC 3339, `2016-02-10T20:15:00Z`.
pub fn timestamp_rfc3339() -> String {
    format!("{}Z", format(now_secs(), 'T'))
}

/// iocage's `last_started` value, `2016-02-10_20:15:00` (UTC).
pub fn timestamp() -> String {
    format(now_secs(), '_')
}

/// The host's hostid as iocage records it: FreeBSD's /etc/hostid is a UUID
/// in text; Linux's is four binary bytes, shown as hex. `none` without one.
pub fn host_id() -> String {
    match std::fs::read("/etc/hostid") {
        Ok(b) if b.len() == 4 => format!("{:08x}", u32::from_ne_bytes([b[0], b[1], b[2], b[3]])),
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => "none".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uuids_are_random_v4() {
        let (a, b) = (new_uuid().unwrap(), new_uuid().unwrap());
        assert_ne!(a, b);
        assert_eq!(a.len(), 36);
        assert_eq!(&a[14..15], "4");
        assert!(crate::iocage::props::check_format(crate::iocage::props::Format::Uuid, &a).is_ok());
    }

    #[test]
    fn dates() {
        assert_eq!(format(0, '@'), "1970-01-01@00:00:00");
        assert_eq!(format(1_454_077_189, '@'), "2016-01-29@14:19:49");
        assert_eq!(format(1_455_135_300, '_'), "2016-02-10_20:15:00");
        assert_eq!(format(951_782_400, '@'), "2000-02-29@00:00:00");
    }
}
