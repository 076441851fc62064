//! Writing a family from a collector: values read at scrape time (atomics
//! kept by the daemons, a ledger census), each with its label set. The
//! descriptor is always written, so a family with no sample yet still
//! appears in the catalogue and in a scrape.

use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use prometheus_client::registry::Unit;

/// A label set: fixed keys, values from the daemon.
pub(super) type Labels = Vec<(&'static str, String)>;

/// One sample: its labels and value.
pub(super) type Sample<V> = (Labels, V);

/// Writes counter `name` (`_total` is added) with `samples`.
pub(super) fn counters(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: &[Sample<u64>],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Counter)?;
    for (labels, v) in samples {
        ConstCounter::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// Writes gauge `name` with `samples`.
pub(super) fn gauges(
    enc: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    unit: Option<&Unit>,
    samples: &[Sample<i64>],
) -> Result<(), std::fmt::Error> {
    let mut m = enc.encode_descriptor(name, help, unit, MetricType::Gauge)?;
    for (labels, v) in samples {
        ConstGauge::new(*v).encode(m.encode_family(labels)?)?;
    }
    Ok(())
}

/// A count as a gauge value (saturating: no stored number may break a scrape).
pub(super) fn gauge_value(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// One label.
pub(super) fn label(key: &'static str, value: impl Into<String>) -> Labels {
    vec![(key, value.into())]
}
