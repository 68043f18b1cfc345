//! The `key=value` settings after a method name in a reduction spec
//! (`mustdrop:keep=64,tau=0.8`), read once each so that a misspelt knob is an error.

use std::collections::BTreeMap;
use std::str::FromStr;

use crate::error::{Error, Result};

pub struct Knobs {
    method: String,
    values: BTreeMap<String, String>,
}

impl Knobs {
    /// Parses `k=v,k=v` (empty for none).
    pub fn parse(method: &str, text: &str) -> Result<Self> {
        let mut values = BTreeMap::new();
        for item in text.split(',').filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| Error::usage(format!("--reduce {method}: expected key=value, got '{item}'")))?;
            let (key, value) = (key.trim(), value.trim());
            if key.is_empty() || value.is_empty() {
                return Err(Error::usage(format!(
                    "--reduce {method}: expected key=value, got '{item}'"
                )));
            }
            if values.insert(key.to_string(), value.to_string()).is_some() {
                return Err(Error::usage(format!("--reduce {method}: '{key}' is given twice")));
            }
        }
        Ok(Knobs {
            method: method.to_string(),
            values,
        })
    }

    pub fn has(&self, key: &str) -> bool {
        self.values.contains_key(key)
    }

    /// Takes a knob's value, parsed; `None` when absent.
    pub fn take<T: FromStr>(&mut self, key: &str, what: &str) -> Result<Option<T>> {
        match self.values.remove(key) {
            None => Ok(None),
            Some(text) => text
                .parse()
                .map(Some)
                .map_err(|_| Error::usage(format!("--reduce {}: {key}={text} is not {what}", self.method))),
        }
    }

    /// A number in `range` (inclusive).
    pub fn take_in<T>(&mut self, key: &str, what: &str, lo: T, hi: T) -> Result<Option<T>>
    where
        T: FromStr + PartialOrd + Copy + std::fmt::Display,
    {
        let value = self.take::<T>(key, what)?;
        if let Some(v) = value {
            if !(lo..=hi).contains(&v) {
                return Err(Error::usage(format!(
                    "--reduce {}: {key}={v} is out of range ({lo} to {hi})",
                    self.method
                )));
            }
        }
        Ok(value)
    }

    /// `on`/`off` (also true/false, 1/0).
    pub fn take_switch(&mut self, key: &str) -> Result<Option<bool>> {
        match self.values.remove(key).as_deref() {
            None => Ok(None),
            Some("on" | "true" | "1") => Ok(Some(true)),
            Some("off" | "false" | "0") => Ok(Some(false)),
            Some(other) => Err(Error::usage(format!(
                "--reduce {}: {key}={other} must be on or off",
                self.method
            ))),
        }
    }

    /// One of a fixed set of words.
    pub fn take_choice(&mut self, key: &str, choices: &[&'static str]) -> Result<Option<&'static str>> {
        match self.values.remove(key) {
            None => Ok(None),
            Some(v) => choices.iter().find(|c| **c == v).copied().map(Some).ok_or_else(|| {
                Error::usage(format!(
                    "--reduce {}: {key}={v} must be one of {}",
                    self.method,
                    choices.join(", ")
                ))
            }),
        }
    }

    /// A `/`-separated list of layer indices, strictly ascending.
    pub fn take_layers(&mut self, key: &str) -> Result<Option<Vec<usize>>> {
        let Some(text) = self.values.remove(key) else {
            return Ok(None);
        };
        let bad = || {
            Error::usage(format!(
                "--reduce {}: {key}={text} must be ascending layer numbers separated by '/'",
                self.method
            ))
        };
        let layers = text
            .split('/')
            .map(|s| s.trim().parse::<usize>().map_err(|_| bad()))
            .collect::<Result<Vec<_>>>()?;
        if layers.is_empty() || layers.windows(2).any(|w| w[0] >= w[1]) {
            return Err(bad());
        }
        Ok(Some(layers))
    }

    /// Fails on any knob not in `known`; called before reading any, so a misspelt knob is
    /// reported as such rather than as the knob it was meant to be missing.
    pub fn only(&self, known: &[&str]) -> Result<()> {
        match self.values.keys().find(|k| !known.contains(&k.as_str())) {
            None => Ok(()),
            Some(key) => Err(Error::usage(format!(
                "--reduce {}: unknown setting '{key}' (known: {})",
                self.method,
                known.join(", ")
            ))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_reports_unknown_knobs() {
        let mut k = Knobs::parse("m", "keep=64,layers=2/6,on=off").unwrap();
        k.only(&["keep", "layers", "on"]).unwrap();
        assert_eq!(k.take::<usize>("keep", "a count").unwrap(), Some(64));
        assert_eq!(k.take_layers("layers").unwrap(), Some(vec![2, 6]));
        assert_eq!(k.take_switch("on").unwrap(), Some(false));
        let k = Knobs::parse("m", "kep=3").unwrap();
        assert!(k.only(&["keep"]).unwrap_err().message.contains("unknown setting 'kep'"));
        assert!(k.only(&["kep"]).is_ok());
    }

    #[test]
    fn rejects_malformed_items() {
        assert!(Knobs::parse("m", "keep").is_err());
        assert!(Knobs::parse("m", "keep=1,keep=2").is_err());
        let mut k = Knobs::parse("m", "layers=6/2").unwrap();
        assert!(k.take_layers("layers").is_err());
        let mut k = Knobs::parse("m", "tau=x").unwrap();
        assert!(k.take::<f32>("tau", "a number").is_err());
        let mut k = Knobs::parse("m", "tau=2").unwrap();
        assert!(k.take_in::<f32>("tau", "a number", 0.0, 1.0).is_err());
    }
}
