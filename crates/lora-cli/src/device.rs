//! The device a user names on the command line (`cpu`, `cuda`, `cuda:N`), a check that
//! CUDA is really there before Burn is asked for it (Burn 0.21 panics on a missing driver), and
//! where compiled GPU kernels are kept between runs.

use std::ffi::OsString;
use std::fmt;
use std::path::PathBuf;
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

/// Where compiled GPU kernels are kept between runs, given a way to read the environment:
/// `LORA_KERNEL_CACHE` (a directory, or `off` for none), else `$XDG_CACHE_HOME/lora/kernels`,
/// else `$HOME/.cache/lora/kernels`.
///
/// Burn's CUDA backend generates and compiles its kernels (NVRTC) while a run goes; a LoRA
/// training step needs hundreds of them, so without a cache every run pays that again.
pub fn kernel_cache_dir(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("LORA_KERNEL_CACHE") {
        return (dir != "off").then(|| PathBuf::from(dir));
    }
    let xdg = set("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("lora").join("kernels"))
}

#[cfg(feature = "cuda")]
pub use cuda::{CudaUnfused, use_kernel_cache};

#[cfg(feature = "cuda")]
mod cuda {
    use std::fmt::Display;
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use cubecl::config::cache::CacheConfig;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};

    /// Burn's CUDA backend without its operation fusion (`burn::backend::Cuda` is this inside
    /// `Fusion`): one generic kernel per operation, expected to mean fewer kernels to compile
    /// (not yet measured on a GPU).
    pub type CudaUnfused<F = f32> = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, F, i32, u8>;

    /// Loads the driver library by hand: Burn would panic without one.
    pub fn check() -> Result<(), String> {
        // SAFETY: `is_culib_present` only tries to dlopen libcuda and reports whether it could.
        #[allow(unsafe_code)]
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        if present { Ok(()) } else { Err("no CUDA driver found (libcuda.so could not be loaded)".into()) }
    }

    /// Turns on CubeCL's compiled-kernel cache in [`super::kernel_cache_dir`], with the autotune
    /// results beside it, unless a `cubecl.toml` (or `burn.toml`) already names a kernel cache.
    /// Call before the first CUDA device is made; later calls, and calls after CubeCL has read
    /// its config, change nothing. Returns the directory in use, if any; `Err` names a config
    /// file CubeCL could not read.
    pub fn use_kernel_cache() -> Result<Option<PathBuf>, String> {
        let mut slot = CubeClRuntimeConfig::storage().lock();
        if slot.is_none() {
            let here = std::env::current_dir().map_err(|e| format!("the working directory: {e}"))?;
            check_config_files(&here)?;
            // What `CubeClRuntimeConfig::get` would load: the nearest cubecl.toml, then CUBECL_* variables.
            let config = CubeClRuntimeConfig::from_current_dir().override_from_env();
            let dir = super::kernel_cache_dir(|k| std::env::var_os(k));
            *slot = Some(Arc::new(with_kernel_cache(config, dir)));
        }
        Ok(slot.as_ref().and_then(|c| c.compilation.cache.as_ref()).map(CacheConfig::root))
    }

    /// The config file CubeCL would read from `dir` or above (the first `cubecl.toml`, else a
    /// `burn.toml` with a `[cubecl]` table, nearest first) must parse: CubeCL panics on one that
    /// does not, so it is checked here first and named in the error.
    fn check_config_files(dir: &Path) -> Result<(), String> {
        let bad = |path: &Path, e: &dyn Display| format!("{}: not a CubeCL config: {e}", path.display());
        for dir in dir.ancestors() {
            for name in ["cubecl.toml", "CubeCL.toml"] {
                let path = dir.join(name);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    return toml::from_str::<CubeClRuntimeConfig>(&text).map(drop).map_err(|e| bad(&path, &e));
                }
            }
            for name in ["burn.toml", "Burn.toml"] {
                let path = dir.join(name);
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                let mut table = toml::from_str::<toml::Table>(&text).map_err(|e| bad(&path, &e))?;
                if let Some(section) = table.remove("cubecl") {
                    return section.try_into::<CubeClRuntimeConfig>().map(drop).map_err(|e| bad(&path, &e));
                }
            }
        }
        Ok(())
    }

    /// `config` with compiled kernels, and autotune results left at CubeCL's default place,
    /// kept in `dir`; a config that names a kernel cache is kept as it is.
    fn with_kernel_cache(mut config: CubeClRuntimeConfig, dir: Option<PathBuf>) -> CubeClRuntimeConfig {
        if let (None, Some(dir)) = (&config.compilation.cache, dir) {
            if matches!(config.autotune.cache, CacheConfig::Target) {
                config.autotune.cache = CacheConfig::File(dir.clone());
            }
            config.compilation.cache = Some(CacheConfig::File(dir));
        }
        config
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn the_kernel_cache_goes_where_asked_unless_configured() {
            let dir = PathBuf::from("/tmp/k");
            let config = with_kernel_cache(CubeClRuntimeConfig::default(), Some(dir.clone()));
            assert_eq!(config.compilation.cache.as_ref().map(CacheConfig::root), Some(dir.clone()));
            assert_eq!(config.autotune.cache.root(), dir);

            let config = with_kernel_cache(CubeClRuntimeConfig::default(), None);
            assert!(config.compilation.cache.is_none(), "off: no kernel cache");

            let mut mine = CubeClRuntimeConfig::default();
            mine.compilation.cache = Some(CacheConfig::File("/elsewhere".into()));
            let config = with_kernel_cache(mine, Some(dir));
            assert_eq!(config.compilation.cache.as_ref().map(CacheConfig::root), Some(PathBuf::from("/elsewhere")));
            assert!(matches!(config.autotune.cache, CacheConfig::Target));
        }

        #[test]
        fn a_config_file_cubecl_cannot_read_is_named() {
            let root = tempfile::tempdir().unwrap();
            let inner = root.path().join("a/b");
            std::fs::create_dir_all(&inner).unwrap();
            assert_eq!(check_config_files(&inner), Ok(()));

            std::fs::write(root.path().join("cubecl.toml"), "[compilation]\ncache = 3\n").unwrap();
            let err = check_config_files(&inner).unwrap_err();
            assert!(err.contains("cubecl.toml") && err.contains("not a CubeCL config"), "{err}");

            // The nearest file decides: a good burn.toml [cubecl] table below the bad file wins.
            std::fs::write(root.path().join("a/burn.toml"), "[cubecl.autotune]\nlevel = \"minimal\"\n").unwrap();
            assert_eq!(check_config_files(&inner), Ok(()));
            std::fs::write(root.path().join("a/burn.toml"), "[cubecl]\nautotune = 1\n").unwrap();
            assert!(check_config_files(&inner).unwrap_err().contains("burn.toml"));
            // A burn.toml without a [cubecl] table is not CubeCL's: the search goes on upwards.
            std::fs::write(root.path().join("a/burn.toml"), "[other]\nx = 1\n").unwrap();
            assert!(check_config_files(&inner).unwrap_err().contains("cubecl.toml"));
        }
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

    #[test]
    fn kernel_cache_dir_follows_the_environment() {
        let dir = |vars: &[(&str, &str)]| {
            kernel_cache_dir(|k| vars.iter().find(|(name, _)| *name == k).map(|(_, v)| OsString::from(v)))
        };
        let path = |p: &str| Some(PathBuf::from(p));
        assert_eq!(dir(&[("HOME", "/home/a")]), path("/home/a/.cache/lora/kernels"));
        assert_eq!(dir(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "/var/a")]), path("/var/a/lora/kernels"));
        // The XDG spec ignores a relative XDG_CACHE_HOME.
        assert_eq!(dir(&[("HOME", "/home/a"), ("XDG_CACHE_HOME", "a")]), path("/home/a/.cache/lora/kernels"));
        assert_eq!(dir(&[("HOME", "/home/a"), ("LORA_KERNEL_CACHE", "/tmp/k")]), path("/tmp/k"));
        assert_eq!(dir(&[("HOME", "/home/a"), ("LORA_KERNEL_CACHE", "off")]), None);
        assert_eq!(dir(&[]), None);
    }

    #[cfg(not(feature = "cuda"))]
    #[test]
    fn cuda_without_the_feature_says_so() {
        assert!(check_available(DeviceSpec::Cuda(0)).unwrap_err().contains("`cuda` feature"));
    }
}
