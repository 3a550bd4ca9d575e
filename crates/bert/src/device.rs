//! The device a user names on the command line (`cpu`, `cuda`, `cuda:N`), and a check that
//! CUDA is really there before Burn is asked for it (Burn 0.21 panics on a missing driver).

use std::fmt;
use std::str::FromStr;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceSpec {
    /// Burn's `flex` backend on all cores.
    Cpu,
    /// NVIDIA GPU `N` (the `cuda` cargo feature).
    Cuda(usize),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            other => other
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(Self::Cuda)
                .ok_or_else(|| format!("unknown device {s:?}; expected cpu, cuda or cuda:N")),
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

/// Whether this build can run on `spec`: `Err` says why not, in one line.
pub fn check_available(spec: DeviceSpec) -> Result<(), String> {
    match spec {
        DeviceSpec::Cpu => Ok(()),
        DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => {
            Err(format!("{spec} requested, but this binary was built without the `cuda` feature"))
        }
        DeviceSpec::Cuda(_) => cuda::check(),
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    /// Loads the driver library by hand: Burn would panic without one.
    pub fn check() -> Result<(), String> {
        // SAFETY: `is_culib_present` only tries to dlopen libcuda and reports whether it could.
        #[allow(unsafe_code)]
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        if present { Ok(()) } else { Err("no CUDA driver found (libcuda.so could not be loaded)".into()) }
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    pub fn check() -> Result<(), String> {
        Ok(())
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn parses_device_names() {
        assert_eq!("cpu".parse(), Ok(DeviceSpec::Cpu));
        assert_eq!("cuda".parse(), Ok(DeviceSpec::Cuda(0)));
        assert_eq!("CUDA:2".parse(), Ok(DeviceSpec::Cuda(2)));
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("cpu, cuda or cuda:N"));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_so() {
        assert!(check_available(DeviceSpec::Cuda(0)).unwrap_err().contains("`cuda` feature"));
    }
}
