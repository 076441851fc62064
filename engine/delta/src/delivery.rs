//! What to send a straggler, and whether it fits its data budget.
//!
//! The rule: a delta goes only when the client's version is known, a delta
//! exists, and it is smaller than the zstd-compressed full artifact (or,
//! stricter, below a ratio of it). Otherwise the full artifact goes, and the
//! decision says why, so the audit shows every fall-back; none is silent.

use std::fmt;

/// What the master has for this client's base.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DeltaOffer {
    /// The client's installed version is not in the store.
    UnknownBase,
    /// The base is known but no delta could be made (the error is logged
    /// where it happened).
    Unavailable,
    /// A delta of this many bytes is cached.
    Delta {
        /// Its size on the wire.
        bytes: u64,
    },
}

/// Why the full artifact goes instead of a delta.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum FullReason {
    /// The client's version is unknown to the store.
    UnknownBase,
    /// No delta could be made for this pair.
    DeltaUnavailable,
    /// The delta is not smaller than the compressed full artifact.
    NotSmaller {
        /// The delta's size.
        delta_bytes: u64,
    },
    /// The delta is smaller, but not by enough ([`DeliveryRule::max_permille`]).
    AboveRatio {
        /// The delta's size.
        delta_bytes: u64,
        /// The largest delta allowed, in thousandths of the full size.
        max_permille: u32,
    },
}

impl fmt::Display for FullReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::UnknownBase => f.write_str("the client's version is unknown to the store"),
            Self::DeltaUnavailable => f.write_str("no delta could be made for this pair"),
            Self::NotSmaller { delta_bytes } => write!(
                f,
                "the delta ({delta_bytes} bytes) is not smaller than the compressed artifact"
            ),
            Self::AboveRatio {
                delta_bytes,
                max_permille,
            } => write!(
                f,
                "the delta ({delta_bytes} bytes) is above {}.{}% of the compressed artifact",
                max_permille / 10,
                max_permille % 10
            ),
        }
    }
}

/// The decision for one straggler.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "send", rename_all = "snake_case")]
pub enum Delivery {
    /// Send the delta.
    Delta {
        /// The delta's size on the wire.
        delta_bytes: u64,
        /// What the full artifact would have cost.
        full_bytes: u64,
    },
    /// Send the zstd-compressed full artifact.
    Full {
        /// Its size on the wire.
        full_bytes: u64,
        /// Why not a delta.
        reason: FullReason,
    },
}

impl Delivery {
    /// Bytes this delivery puts on the wire.
    pub fn wire_bytes(&self) -> u64 {
        match *self {
            Self::Delta { delta_bytes, .. } => delta_bytes,
            Self::Full { full_bytes, .. } => full_bytes,
        }
    }

    /// True when the full artifact goes.
    pub fn is_full(&self) -> bool {
        matches!(self, Self::Full { .. })
    }
}

impl fmt::Display for Delivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Delta {
                delta_bytes,
                full_bytes,
            } => write!(
                f,
                "delta of {delta_bytes} bytes instead of {full_bytes} for the full artifact"
            ),
            Self::Full { full_bytes, reason } => {
                write!(f, "full artifact of {full_bytes} bytes: {reason}")
            }
        }
    }
}

/// The "not smaller → full" rule, with an optional stricter ratio.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DeliveryRule {
    /// A delta goes only if it is below this many thousandths of the full
    /// compressed artifact. 1000 (the default) means "smaller"; 900 means
    /// "saves at least 10%", which spares the client the base check and
    /// decode when the gain is marginal.
    pub max_permille: u32,
}

impl Default for DeliveryRule {
    fn default() -> Self {
        Self { max_permille: 1000 }
    }
}

impl DeliveryRule {
    /// Decides what goes to a client, given what the master has for its base
    /// and the size of the zstd-compressed full artifact.
    pub fn choose(&self, offer: DeltaOffer, full_bytes: u64) -> Delivery {
        let full = |reason| Delivery::Full { full_bytes, reason };
        match offer {
            DeltaOffer::UnknownBase => full(FullReason::UnknownBase),
            DeltaOffer::Unavailable => full(FullReason::DeltaUnavailable),
            DeltaOffer::Delta { bytes } if bytes >= full_bytes => {
                full(FullReason::NotSmaller { delta_bytes: bytes })
            }
            // delta * 1000 >= full * permille, in u128 so nothing overflows.
            DeltaOffer::Delta { bytes }
                if u128::from(bytes) * 1000
                    >= u128::from(full_bytes) * u128::from(self.max_permille) =>
            {
                full(FullReason::AboveRatio {
                    delta_bytes: bytes,
                    max_permille: self.max_permille,
                })
            }
            DeltaOffer::Delta { bytes } => Delivery::Delta {
                delta_bytes: bytes,
                full_bytes,
            },
        }
    }
}

/// A per-client cap on the bytes sent to it (over a run).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct DataBudget {
    /// The most bytes this client may be sent.
    pub limit_bytes: u64,
}

/// Whether a delivery fits a client's budget.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "budget", rename_all = "snake_case")]
pub enum BudgetCheck {
    /// It fits; this much is left after it.
    Within {
        /// Bytes left once it is sent.
        remaining_bytes: u64,
    },
    /// It does not fit.
    OverBudget {
        /// Bytes the delivery needs.
        needed_bytes: u64,
        /// Bytes already sent to the client.
        spent_bytes: u64,
        /// The budget.
        limit_bytes: u64,
    },
}

impl BudgetCheck {
    /// True when over budget.
    pub fn is_over(&self) -> bool {
        matches!(self, Self::OverBudget { .. })
    }
}

impl fmt::Display for BudgetCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Within { remaining_bytes } => {
                write!(f, "within budget ({remaining_bytes} bytes left after it)")
            }
            Self::OverBudget {
                needed_bytes,
                spent_bytes,
                limit_bytes,
            } => write!(
                f,
                "over budget: needs {needed_bytes} bytes, {spent_bytes} of {limit_bytes} already spent"
            ),
        }
    }
}

impl DataBudget {
    /// Checks `delivery` against the budget, given what the client was
    /// already sent.
    pub fn check(&self, spent_bytes: u64, delivery: &Delivery) -> BudgetCheck {
        let needed_bytes = delivery.wire_bytes();
        match spent_bytes.checked_add(needed_bytes) {
            Some(total) if total <= self.limit_bytes => BudgetCheck::Within {
                remaining_bytes: self.limit_bytes - total,
            },
            _ => BudgetCheck::OverBudget {
                needed_bytes,
                spent_bytes,
                limit_bytes: self.limit_bytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_smaller_delta_is_sent() {
        let d = DeliveryRule::default().choose(DeltaOffer::Delta { bytes: 10 }, 100);
        assert_eq!(
            d,
            Delivery::Delta {
                delta_bytes: 10,
                full_bytes: 100
            }
        );
        assert_eq!(d.wire_bytes(), 10);
        assert!(!d.is_full());
    }

    #[test]
    fn unknown_base_and_missing_delta_fall_back_with_a_reason() {
        let rule = DeliveryRule::default();
        let d = rule.choose(DeltaOffer::UnknownBase, 100);
        assert_eq!(
            d,
            Delivery::Full {
                full_bytes: 100,
                reason: FullReason::UnknownBase
            }
        );
        assert_eq!(
            d.to_string(),
            "full artifact of 100 bytes: the client's version is unknown to the store"
        );
        let d = rule.choose(DeltaOffer::Unavailable, 100);
        assert_eq!(d.wire_bytes(), 100);
        assert!(matches!(
            d,
            Delivery::Full {
                reason: FullReason::DeltaUnavailable,
                ..
            }
        ));
    }

    #[test]
    fn a_delta_not_smaller_falls_back() {
        let rule = DeliveryRule::default();
        for bytes in [100, 101, u64::MAX] {
            let d = rule.choose(DeltaOffer::Delta { bytes }, 100);
            assert_eq!(
                d,
                Delivery::Full {
                    full_bytes: 100,
                    reason: FullReason::NotSmaller { delta_bytes: bytes }
                }
            );
        }
        assert!(!rule.choose(DeltaOffer::Delta { bytes: 99 }, 100).is_full());
    }

    #[test]
    fn a_stricter_ratio_falls_back_earlier() {
        let rule = DeliveryRule { max_permille: 900 };
        let d = rule.choose(DeltaOffer::Delta { bytes: 95 }, 100);
        assert_eq!(
            d.to_string(),
            "full artifact of 100 bytes: the delta (95 bytes) is above 90.0% of the compressed artifact"
        );
        assert!(!rule.choose(DeltaOffer::Delta { bytes: 89 }, 100).is_full());
        assert!(rule.choose(DeltaOffer::Delta { bytes: 90 }, 100).is_full());
    }

    #[test]
    fn decisions_serialize_for_the_audit() {
        let d = DeliveryRule::default().choose(DeltaOffer::Delta { bytes: 7 }, 5);
        let json = serde_json::to_string(&d).unwrap();
        assert_eq!(
            json,
            r#"{"send":"full","full_bytes":5,"reason":{"reason":"not_smaller","delta_bytes":7}}"#
        );
        assert_eq!(serde_json::from_str::<Delivery>(&json).unwrap(), d);
    }

    #[test]
    fn budget_says_over_budget() {
        let budget = DataBudget { limit_bytes: 1000 };
        let delta = Delivery::Delta {
            delta_bytes: 300,
            full_bytes: 900,
        };
        assert_eq!(
            budget.check(600, &delta),
            BudgetCheck::Within {
                remaining_bytes: 100
            }
        );
        assert_eq!(
            budget.check(700, &delta),
            BudgetCheck::Within { remaining_bytes: 0 }
        );
        let over = budget.check(701, &delta);
        assert!(over.is_over());
        assert_eq!(
            over.to_string(),
            "over budget: needs 300 bytes, 701 of 1000 already spent"
        );
        assert!(budget.check(u64::MAX, &delta).is_over(), "no overflow");
    }
}
