//! Subscriber filters: `/ws/{key}/filter?addresses=&topics=&match=any|all`.

use crate::frame::Frame;
use alloy_primitives::{Address, B256};
use std::collections::HashSet;

/// A filter parameter that does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FilterError {
    /// An entry of `addresses=` is not a 20-byte hex address.
    #[error("bad address {0:?}")]
    Address(String),
    /// An entry of `topics=` is not a 32-byte hex topic.
    #[error("bad topic {0:?}")]
    Topic(String),
    /// `match=` is neither `any` nor `all`.
    #[error("match must be any or all, not {0:?}")]
    Match(String),
}

/// A client's filter. With both addresses and topics, `match=any` (the default) passes a frame
/// that matches either, `match=all` one that matches both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FrameFilter {
    addresses: HashSet<Address>,
    topics: HashSet<B256>,
    all: bool,
}

impl FrameFilter {
    /// Applies one query parameter; `Ok(false)` when `key` is not a filter parameter.
    pub(crate) fn set(&mut self, key: &str, value: &str) -> Result<bool, FilterError> {
        match key {
            "addresses" => {
                for a in value.split(',').filter(|s| !s.is_empty()) {
                    self.addresses.insert(a.parse().map_err(|_| FilterError::Address(a.into()))?);
                }
            }
            "topics" => {
                for t in value.split(',').filter(|s| !s.is_empty()) {
                    self.topics.insert(t.parse().map_err(|_| FilterError::Topic(t.into()))?);
                }
            }
            "match" => match value {
                "any" => self.all = false,
                "all" => self.all = true,
                other => return Err(FilterError::Match(other.into())),
            },
            _ => return Ok(false),
        }
        Ok(true)
    }

    /// Whether `frame` passes. An empty filter passes everything.
    pub(crate) fn matches(&self, frame: &Frame) -> bool {
        let addr = (!self.addresses.is_empty())
            .then(|| self.addresses.iter().any(|a| frame.addresses().contains(a)));
        let topic = (!self.topics.is_empty())
            .then(|| self.topics.iter().any(|t| frame.topics().contains(t)));
        match (addr, topic) {
            (None, None) => true,
            (Some(a), None) => a,
            (None, Some(t)) => t,
            (Some(a), Some(t)) => {
                if self.all {
                    a && t
                } else {
                    a || t
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SourceFrame;

    fn frame(addrs: &[Address], topics: &[B256]) -> Frame {
        let mut source = SourceFrame::new("{}".into(), 1, 0);
        source.addresses = addrs.iter().copied().collect();
        source.topics = topics.iter().copied().collect();
        Frame::new(source)
    }

    fn filter(pairs: &[(&str, &str)]) -> Result<FrameFilter, FilterError> {
        let mut f = FrameFilter::default();
        for (k, v) in pairs {
            assert!(f.set(k, v)?, "{k} is a filter parameter");
        }
        Ok(f)
    }

    #[test]
    fn address_and_topic_filters_match_any_or_all() {
        let a: Address = "0x1111111111111111111111111111111111111111".parse().unwrap();
        let b = Address::repeat_byte(0x22);
        let t = B256::repeat_byte(2);
        let (a_s, t_s) = (a.to_string(), t.to_string());
        let all = filter(&[("addresses", &a_s), ("topics", &t_s), ("match", "all")]).unwrap();
        assert!(all.matches(&frame(&[a], &[t])));
        assert!(!all.matches(&frame(&[a], &[])));
        let any = filter(&[("addresses", &a_s), ("topics", &t_s), ("match", "any")]).unwrap();
        assert!(any.matches(&frame(&[a], &[])));
        assert!(any.matches(&frame(&[], &[t])));
        assert!(!any.matches(&frame(&[b], &[])));
        let only_addr = filter(&[("addresses", &format!("{a},{b}"))]).unwrap();
        assert!(only_addr.matches(&frame(&[b], &[])));
        assert!(!only_addr.matches(&frame(&[], &[t])));
        assert!(FrameFilter::default().matches(&frame(&[], &[])));
    }

    #[test]
    fn bad_parameters_are_named() {
        let mut f = FrameFilter::default();
        assert_eq!(f.set("match", "some"), Err(FilterError::Match("some".into())));
        assert_eq!(f.set("addresses", "0x12"), Err(FilterError::Address("0x12".into())));
        assert_eq!(f.set("topics", "zz"), Err(FilterError::Topic("zz".into())));
        assert_eq!(f.set("compress", "brotli"), Ok(false), "not a filter parameter");
        assert_eq!(f, FrameFilter::default(), "a failed parameter changes nothing");
    }
}
