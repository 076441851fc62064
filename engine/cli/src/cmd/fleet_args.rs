//! The simulated fleet's parameters, shared by `simulate` and `run`.

use anyhow::{Result, bail};

#[derive(Debug, Clone, clap::Args)]
pub(crate) struct FleetArgs {
    /// Number of clients.
    #[arg(long, default_value_t = 1000)]
    pub clients: u32,
    /// Number of relays the clients are spread over.
    #[arg(long, default_value_t = 2)]
    pub relays: u32,
    /// Percent of datagrams each client loses (0-100).
    #[arg(long, default_value = "2", value_name = "PCT")]
    pub loss: String,
    /// Percent of clients offline in each round (0-100).
    #[arg(long, default_value = "10", value_name = "PCT")]
    pub offline: String,
    /// Seed for every random draw: the same seed gives the same run.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

impl FleetArgs {
    /// The parameters for an artifact of `size` bytes.
    pub(crate) fn params(&self, size: u64) -> Result<haifu_runtime::sim::SimParams> {
        if self.clients == 0 {
            bail!("--clients must be at least 1");
        }
        if self.relays == 0 {
            bail!("--relays must be at least 1");
        }
        Ok(haifu_runtime::sim::SimParams {
            clients: self.clients,
            relays: self.relays,
            loss: percent("--loss", &self.loss)?,
            offline: percent("--offline", &self.offline)?,
            seed: self.seed,
            artifact_size: size,
        })
    }
}

/// `12`, `12.5` or `12%` as a fraction; refuses anything outside 0-100.
pub(crate) fn percent(flag: &str, text: &str) -> Result<f64> {
    let t = text.trim().trim_end_matches('%');
    match t.parse::<f64>() {
        Ok(v) if (0.0..=100.0).contains(&v) => Ok(v / 100.0),
        _ => bail!("{flag} {text:?} is not a percentage between 0 and 100"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages() {
        assert_eq!(percent("--loss", "10").unwrap(), 0.1);
        assert_eq!(percent("--loss", "2.5%").unwrap(), 0.025);
        for bad in ["-1", "101", "x", ""] {
            let e = percent("--loss", bad).unwrap_err().to_string();
            assert!(e.starts_with("--loss "), "{e}");
        }
    }
}
