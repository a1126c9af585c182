//! WAL positions as PostgreSQL prints them (`16/B374D848`).
use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not a WAL position (expected two hex numbers like 16/B374D848)")]
pub struct LsnParseError(String);

impl FromStr for Lsn {
    type Err = LsnParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || LsnParseError(s.to_owned());
        let (hi, lo) = s.split_once('/').ok_or_else(bad)?;
        let hi = u32::from_str_radix(hi, 16).map_err(|_| bad())?;
        let lo = u32::from_str_radix(lo, 16).map_err(|_| bad())?;
        Ok(Lsn((u64::from(hi) << 32) | u64::from(lo)))
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_round_trip_and_order_numerically() {
        let a: Lsn = "16/B374D848".parse().unwrap();
        assert_eq!(a.to_string(), "16/B374D848");
        assert_eq!(a.0, (0x16 << 32) | 0xB374_D848);
        assert!("0/FFFFFFFF".parse::<Lsn>().unwrap() < "1/0".parse().unwrap());
        assert!("16-B3".parse::<Lsn>().is_err());
        assert!("/1".parse::<Lsn>().is_err());
    }
}
