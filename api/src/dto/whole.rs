//! Whole numbers in JSON bodies. JSON has one number type, and JSON Schema counts `7.0` as the
//! integer 7; so does the server, for integer fields, as long as the value is exact (at most
//! 2^53 in magnitude). `7.5`, and floats too large to be exact, are refused like any other
//! value of the wrong type.
use serde::de::{self, Deserialize, Deserializer, Visitor};

/// The largest magnitude a JSON float names exactly.
pub const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// A whole number written as an integer or as an exact float with no fraction.
pub fn exact_integer(f: f64) -> Option<i64> {
    // Checked above: the value is whole and within ±2^53, so the cast is exact.
    (f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT).then_some(f as i64)
}

struct Whole(i128);

impl<'de> Deserialize<'de> for Whole {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Whole;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a whole number")
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Whole, E> {
                Ok(Whole(v.into()))
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Whole, E> {
                Ok(Whole(v.into()))
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Whole, E> {
                exact_integer(v)
                    .map(|n| Whole(n.into()))
                    .ok_or_else(|| E::invalid_type(de::Unexpected::Float(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

fn fit<T: TryFrom<i128>, E: de::Error>(n: i128) -> Result<T, E> {
    T::try_from(n).map_err(|_| {
        E::custom(format_args!(
            "{n} is out of range for {}",
            std::any::type_name::<T>()
        ))
    })
}

pub fn i64<'de, D: Deserializer<'de>>(d: D) -> Result<i64, D::Error> {
    fit(Whole::deserialize(d)?.0)
}

pub fn u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    fit(Whole::deserialize(d)?.0)
}

/// For an optional field; it also needs `#[serde(default)]` to be left out.
pub fn option_i64<'de, D: Deserializer<'de>>(d: D) -> Result<Option<i64>, D::Error> {
    Option::<Whole>::deserialize(d)?
        .map(|w| fit(w.0))
        .transpose()
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    #[derive(Debug, Deserialize, PartialEq)]
    struct Body {
        #[serde(deserialize_with = "super::u32")]
        n: u32,
        #[serde(default, deserialize_with = "super::option_i64")]
        rev: Option<i64>,
    }

    fn parse(text: &str) -> Result<Body, String> {
        serde_json::from_str(text).map_err(|e| e.to_string())
    }

    #[test]
    fn whole_floats_count_as_integers_and_fractions_do_not() {
        assert_eq!(parse(r#"{"n": 7}"#), Ok(Body { n: 7, rev: None }));
        assert_eq!(
            parse(r#"{"n": 7.0, "rev": 1e3}"#),
            Ok(Body {
                n: 7,
                rev: Some(1000)
            })
        );
        assert_eq!(
            parse(r#"{"n": 1, "rev": null}"#),
            Ok(Body { n: 1, rev: None })
        );
        assert!(parse(r#"{"n": 7.5}"#).is_err());
        assert!(parse(r#"{"n": "7"}"#).is_err());
    }

    #[test]
    fn values_outside_the_type_or_past_exact_floats_are_refused() {
        assert!(parse(r#"{"n": -1}"#).is_err());
        assert!(parse(r#"{"n": 4294967296}"#).is_err());
        assert!(parse(r#"{"n": 1, "rev": 1e19}"#).is_err());
        assert!(parse(r#"{"n": 1, "rev": 9223372036854775808}"#).is_err());
        assert_eq!(
            parse(r#"{"n": 1, "rev": 9223372036854775807}"#).map(|b| b.rev),
            Ok(Some(i64::MAX))
        );
    }
}
