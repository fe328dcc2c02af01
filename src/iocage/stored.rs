//! A jail's stored iocage properties, kept small.
//!
//! iocage sets every one of its ~110 properties on each jail's dataset,
//! and most hold their defaults; a thousand jails' properties in maps of
//! strings were most of the daemon's memory. [`Stored`] keeps which
//! catalogued properties are set (a bit each), only the values that
//! differ from the property's default (the usual words borrowed, see
//! [`COMMON_VALUES`]), and properties outside the catalogue (another
//! tool's) by name. What it answers is what the map answered: the same
//! names, the same values, in name order.

use std::borrow::Cow;

use super::props::{self, CATALOGUE};

/// A stored value: borrowed when it is one of [`COMMON_VALUES`].
pub type Text = Cow<'static, str>;

/// Values many properties hold besides their defaults, kept once (sorted).
pub(crate) const COMMON_VALUES: &[&str] =
    &["", "-", "0", "1", "auto", "disable", "inherit", "new", "no", "none", "off", "on", "yes"];

/// Catalogue positions below this have a bit in [`Stored::set`].
const BITS: usize = 128;

/// One jail's iocage properties (API names), as stored on its dataset.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stored {
    /// Bit `i`: catalogue property `i` is set on the dataset.
    set: u128,
    /// The values of set catalogue properties that are not the property's
    /// default, by catalogue position.
    values: Box<[(u16, Text)]>,
    /// Properties outside the catalogue (or past [`BITS`]), by name.
    other: Box<[(Box<str>, Text)]>,
}

fn text(value: String) -> Text {
    match COMMON_VALUES.binary_search(&value.as_str()) {
        Ok(i) => Cow::Borrowed(COMMON_VALUES[i]),
        Err(_) => Cow::Owned(value),
    }
}

impl Stored {
    /// The properties `(name, value)`; a name given twice keeps its last
    /// value. O(n log n) in the properties, however many another tool set.
    pub fn new(pairs: impl IntoIterator<Item = (String, String)>) -> Stored {
        let mut catalogued: Vec<(usize, String)> = Vec::new();
        let mut other: Vec<(String, String)> = Vec::new();
        for (name, value) in pairs {
            match props::position(&name).filter(|&i| i < BITS) {
                Some(i) => catalogued.push((i, value)),
                None => other.push((name, value)),
            }
        }
        // Stable sorts: of equal names, the last given comes last.
        catalogued.sort_by_key(|(i, _)| *i);
        other.sort_by(|a, b| a.0.cmp(&b.0));
        let mut set = 0u128;
        let mut values = Vec::new();
        for (i, value) in last_of_each(catalogued) {
            set |= 1 << i;
            if CATALOGUE[i].default != value {
                // `i` < BITS, so it fits.
                values.push((i as u16, text(value)));
            }
        }
        let other = last_of_each(other).map(|(n, v)| (n.into_boxed_str(), text(v))).collect();
        Stored { set, values: values.into_boxed_slice(), other }
    }

    /// The value of `name`, when it is set.
    pub fn get(&self, name: &str) -> Option<&str> {
        match props::position(name).filter(|&i| i < BITS) {
            Some(i) => self.at(i),
            None => self.other.binary_search_by(|(n, _)| (**n).cmp(name)).ok().map(|k| self.other[k].1.as_ref()),
        }
    }

    /// The value of catalogue property `i`, when it is set.
    fn at(&self, i: usize) -> Option<&str> {
        if self.set & (1 << i) == 0 {
            return None;
        }
        match self.values.binary_search_by_key(&i, |(p, _)| usize::from(*p)) {
            Ok(k) => Some(self.values[k].1.as_ref()),
            Err(_) => Some(CATALOGUE[i].default),
        }
    }

    /// Every property set, `(name, value)`, in name order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        let catalogued = (0..CATALOGUE.len().min(BITS)).filter_map(|i| Some((CATALOGUE[i].name, self.at(i)?)));
        let mut all: Vec<(&str, &str)> = catalogued.chain(self.other.iter().map(|(n, v)| (&**n, v.as_ref()))).collect();
        all.sort_unstable_by(|a, b| a.0.cmp(b.0));
        all.into_iter()
    }
}

/// Of pairs sorted by key, the last of each key.
fn last_of_each<K: PartialEq, V>(sorted: Vec<(K, V)>) -> impl Iterator<Item = (K, V)> {
    let mut it = sorted.into_iter().peekable();
    std::iter::from_fn(move || {
        loop {
            let item = it.next()?;
            if it.peek().is_none_or(|next| next.0 != item.0) {
                return Some(item);
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn answers_as_the_map_of_its_properties_would() {
        let given = [
            ("zzz_other_tool", "x"),
            ("tag", "web"),
            ("boot", "off"),
            ("notes", "none"),
            ("host_hostname", "web.example"),
            ("ip4_addr", "em0|10.0.0.5/24"),
            ("a_tool", ""),
        ];
        let s = Stored::new(pairs(&given));
        let mut want = given.to_vec();
        want.sort();
        assert_eq!(s.iter().collect::<Vec<_>>(), want, "the same names and values, in name order");
        for (k, v) in given {
            assert_eq!(s.get(k), Some(v), "{k}");
        }
        assert_eq!((s.get("vnet"), s.get("nothing")), (None, None), "what is not set is not there");
        assert!(COMMON_VALUES.windows(2).all(|w| w[0] < w[1]), "sorted, for the binary search");
        assert!(CATALOGUE.len() <= BITS, "every catalogued property has its bit");
    }

    #[test]
    fn defaults_take_no_room_and_the_usual_words_are_borrowed() {
        // boot's default is "off", notes' "none": set, but no value kept.
        let s = Stored::new(pairs(&[("boot", "off"), ("notes", "none"), ("vnet", "on"), ("tag", "web")]));
        assert_eq!(s.values.len(), 2, "{:?}", s.values);
        let vnet = s.values.iter().find(|(p, _)| CATALOGUE[usize::from(*p)].name == "vnet").unwrap();
        assert!(matches!(vnet.1, Cow::Borrowed(_)), "\"on\" is a common word");
        let tag = s.values.iter().find(|(p, _)| CATALOGUE[usize::from(*p)].name == "tag").unwrap();
        assert!(matches!(tag.1, Cow::Owned(_)));
        assert_eq!((s.get("boot"), s.get("notes")), (Some("off"), Some("none")));
    }

    #[test]
    fn equal_properties_compare_equal_whatever_their_order() {
        let a = Stored::new(pairs(&[("tag", "a"), ("boot", "on"), ("x_y", "1")]));
        let b = Stored::new(pairs(&[("x_y", "1"), ("boot", "on"), ("tag", "a")]));
        assert_eq!(a, b);
        let c = Stored::new(pairs(&[("tag", "a"), ("boot", "off"), ("x_y", "1")]));
        assert_ne!(a, c);
        // The last value given counts, as a map's insert would.
        assert_eq!(Stored::new(pairs(&[("tag", "a"), ("tag", "b")])).get("tag"), Some("b"));
        assert_eq!(Stored::new(pairs(&[("tag", "b"), ("tag", "none")])), Stored::new(pairs(&[("tag", "none")])));
        let s = Stored::new(pairs(&[("x_y", "1"), ("a", "2"), ("x_y", "3")]));
        assert_eq!(s.iter().collect::<Vec<_>>(), [("a", "2"), ("x_y", "3")], "another tool's too");
    }
}
