//! QoS specifications and the QoS cube mapping of Ouroboros 0.23 (`qos.h`, `qoscube.c`).

/// A flow's QoS specification, as carried in every flow allocation message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "serde", derive(serde::Serialize, serde::Deserialize))]
pub struct QosSpec {
    /// Maximum one-way delay in ms (`u32::MAX`: don't care).
    pub delay: u32,
    /// Bandwidth in bit/s (0: don't care).
    pub bandwidth: u64,
    /// Availability, as a class of nines.
    pub availability: u8,
    /// Tolerated loss (0 means no loss: retransmission).
    pub loss: u32,
    /// Bit errors per 10^9 bits (0 means a CRC is wanted).
    pub ber: u32,
    /// In-order delivery (non-zero instantiates FRCT).
    pub in_order: u8,
    /// Maximum gap in ms.
    pub max_gap: u32,
    /// Peer time-out in ms.
    pub timeout: u32,
}

impl QosSpec {
    /// `qos_raw`.
    pub const RAW: QosSpec = QosSpec {
        delay: u32::MAX,
        bandwidth: 0,
        availability: 0,
        loss: 1,
        ber: 1,
        in_order: 0,
        max_gap: u32::MAX,
        timeout: 120_000,
    };
    /// `qos_raw_no_errors`.
    pub const RAW_NO_ERRORS: QosSpec = QosSpec {
        ber: 0,
        ..Self::RAW
    };
    /// `qos_best_effort`.
    pub const BEST_EFFORT: QosSpec = QosSpec {
        ber: 0,
        in_order: 1,
        ..Self::RAW
    };
    /// `qos_video`.
    pub const VIDEO: QosSpec = QosSpec {
        delay: 100,
        bandwidth: u64::MAX,
        availability: 3,
        loss: 1,
        ber: 0,
        in_order: 1,
        max_gap: 100,
        timeout: 120_000,
    };
    /// `qos_voice`.
    pub const VOICE: QosSpec = QosSpec {
        delay: 50,
        bandwidth: 100_000,
        availability: 5,
        loss: 1,
        ber: 0,
        in_order: 1,
        max_gap: 50,
        timeout: 120_000,
    };
    /// `qos_data`.
    pub const DATA: QosSpec = QosSpec {
        delay: 1000,
        bandwidth: 0,
        availability: 0,
        loss: 0,
        ber: 0,
        in_order: 1,
        max_gap: 2000,
        timeout: 120_000,
    };
    /// All-zero spec (what management messages that carry no QoS hold).
    pub const ZERO: QosSpec = QosSpec {
        delay: 0,
        bandwidth: 0,
        availability: 0,
        loss: 0,
        ber: 0,
        in_order: 0,
        max_gap: 0,
        timeout: 0,
    };

    /// The predefined spec of a tool's `-q` name: `raw`, `best`, `video`, `voice`, `data`.
    pub fn by_name(name: &str) -> Option<QosSpec> {
        Some(match name {
            "raw" => Self::RAW,
            "raw_no_errors" => Self::RAW_NO_ERRORS,
            "best" => Self::BEST_EFFORT,
            "video" => Self::VIDEO,
            "voice" => Self::VOICE,
            "data" => Self::DATA,
            _ => return None,
        })
    }

    /// The name of the predefined spec equal to this one, if any; a spec that differs from
    /// a preset only in `ber` 1 has its name too (the reference's default build, and o7s
    /// by default, send every preset with `ber` 1: `QOS_DISABLE_CRC`).
    pub fn preset_name(&self) -> Option<&'static str> {
        let presets = [
            ("raw", Self::RAW),
            ("raw_no_errors", Self::RAW_NO_ERRORS),
            ("best", Self::BEST_EFFORT),
            ("video", Self::VIDEO),
            ("voice", Self::VOICE),
            ("data", Self::DATA),
        ];
        presets
            .iter()
            .find(|(_, q)| q == self)
            .or_else(|| {
                presets
                    .iter()
                    .find(|(_, q)| QosSpec { ber: 1, ..*q } == *self)
            })
            .map(|(n, _)| *n)
    }

    /// The QoS cube this spec maps to.
    pub fn cube(&self) -> QosCube {
        if self.delay <= 50
            && self.bandwidth <= 100_000
            && self.availability >= 5
            && self.max_gap <= 50
        {
            QosCube::Voice
        } else if self.delay <= 100 && self.availability >= 3 && self.max_gap <= 100 {
            QosCube::Video
        } else {
            QosCube::BestEffort
        }
    }
}

/// QoS cube, the `qc` byte of the unicast DT PCI.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QosCube {
    /// `QOS_CUBE_BE` (0).
    BestEffort,
    /// `QOS_CUBE_VIDEO` (1).
    Video,
    /// `QOS_CUBE_VOICE` (2).
    Voice,
    /// Any other value (round-trips).
    Unknown(u8),
}

impl From<u8> for QosCube {
    fn from(v: u8) -> Self {
        match v {
            0 => Self::BestEffort,
            1 => Self::Video,
            2 => Self::Voice,
            x => Self::Unknown(x),
        }
    }
}

impl From<QosCube> for u8 {
    fn from(c: QosCube) -> u8 {
        match c {
            QosCube::BestEffort => 0,
            QosCube::Video => 1,
            QosCube::Voice => 2,
            QosCube::Unknown(x) => x,
        }
    }
}

impl core::fmt::Display for QosCube {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BestEffort => f.write_str("BE"),
            Self::Video => f.write_str("VIDEO"),
            Self::Voice => f.write_str("VOICE"),
            Self::Unknown(x) => write!(f, "unknown({x})"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cubes_of_presets() {
        assert_eq!(QosSpec::RAW.cube(), QosCube::BestEffort);
        assert_eq!(QosSpec::DATA.cube(), QosCube::BestEffort);
        assert_eq!(QosSpec::VIDEO.cube(), QosCube::Video);
        assert_eq!(QosSpec::VOICE.cube(), QosCube::Voice);
    }

    #[test]
    fn cubes_read_as_the_reference_names_them() {
        let shown: Vec<String> = [0u8, 1, 2, 7]
            .into_iter()
            .map(|v| QosCube::from(v).to_string())
            .collect();
        assert_eq!(shown, ["BE", "VIDEO", "VOICE", "unknown(7)"]);
    }

    #[test]
    fn presets_are_the_facts_table_field_by_field() {
        // (delay, bandwidth, availability, loss, ber, in_order, max_gap, timeout): facts §1.4.
        let row = |q: QosSpec| {
            (
                q.delay,
                q.bandwidth,
                q.availability,
                q.loss,
                q.ber,
                q.in_order,
                q.max_gap,
                q.timeout,
            )
        };
        let m = u32::MAX;
        assert_eq!(row(QosSpec::RAW), (m, 0, 0, 1, 1, 0, m, 120_000));
        assert_eq!(row(QosSpec::RAW_NO_ERRORS), (m, 0, 0, 1, 0, 0, m, 120_000));
        assert_eq!(row(QosSpec::BEST_EFFORT), (m, 0, 0, 1, 0, 1, m, 120_000));
        assert_eq!(
            row(QosSpec::VIDEO),
            (100, u64::MAX, 3, 1, 0, 1, 100, 120_000)
        );
        assert_eq!(row(QosSpec::VOICE), (50, 100_000, 5, 1, 0, 1, 50, 120_000));
        assert_eq!(row(QosSpec::DATA), (1000, 0, 0, 0, 0, 1, 2000, 120_000));
        assert_eq!(row(QosSpec::ZERO), (0, 0, 0, 0, 0, 0, 0, 0));
    }

    #[test]
    fn each_condition_of_the_cube_rule_counts_at_its_edge() {
        let v = QosSpec::VOICE;
        assert_eq!(v.cube(), QosCube::Voice);
        // One voice condition missed by one: video (all of video's still hold).
        for q in [
            QosSpec { delay: 51, ..v },
            QosSpec {
                bandwidth: 100_001,
                ..v
            },
            QosSpec {
                availability: 4,
                ..v
            },
            QosSpec { max_gap: 51, ..v },
        ] {
            assert_eq!(q.cube(), QosCube::Video, "{q:?}");
        }
        let w = QosSpec::VIDEO;
        assert_eq!(
            QosSpec {
                delay: 100,
                max_gap: 100,
                ..w
            }
            .cube(),
            QosCube::Video
        );
        for q in [
            QosSpec { delay: 101, ..w },
            QosSpec {
                availability: 2,
                ..w
            },
            QosSpec { max_gap: 101, ..w },
        ] {
            assert_eq!(q.cube(), QosCube::BestEffort, "{q:?}");
        }
    }

    #[test]
    fn names_round_trip() {
        assert_eq!(
            QosSpec::by_name("raw_no_errors"),
            Some(QosSpec::RAW_NO_ERRORS)
        );
        for n in ["raw", "raw_no_errors", "best", "video", "voice", "data"] {
            let q = QosSpec::by_name(n).unwrap();
            assert_eq!(q.preset_name(), Some(n));
        }
        assert_eq!(QosSpec::by_name("gold"), None);
    }

    #[test]
    fn a_preset_sent_with_ber_1_keeps_its_name_and_nothing_else_does() {
        for n in ["best", "video", "voice", "data"] {
            let q = QosSpec::by_name(n).unwrap();
            assert_eq!(QosSpec { ber: 1, ..q }.preset_name(), Some(n));
            assert_eq!(QosSpec { ber: 2, ..q }.preset_name(), None, "{n}");
            assert_eq!(QosSpec { loss: 7, ..q }.preset_name(), None, "{n}");
        }
        // raw_no_errors with ber 1 is raw.
        assert_eq!(
            QosSpec {
                ber: 1,
                ..QosSpec::RAW_NO_ERRORS
            }
            .preset_name(),
            Some("raw")
        );
    }
}
