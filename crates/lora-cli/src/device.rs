//! The device a user names on the command line (`cpu`, `cuda[:N]`, `wgpu[:N]`), a check that
//! the GPU is really there before Burn is asked for it (Burn 0.21 panics on a missing driver or
//! adapter), where compiled GPU kernels are kept between runs, and how many a run compiled.

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
    /// A GPU through wgpu (the `wgpu` cargo feature): Vulkan on Linux and Windows, Metal on
    /// macOS. `None` is the first of discrete, integrated, virtual and other GPUs, then CPU
    /// drivers (Mesa's lavapipe); `Some(N)` the N-th adapter in the driver's order.
    Wgpu(Option<usize>),
}

impl FromStr for DeviceSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let unknown = || format!("unknown device {s:?}; expected cpu, cuda, cuda:N, wgpu or wgpu:N");
        match s.trim().to_ascii_lowercase().as_str() {
            "cpu" => Ok(Self::Cpu),
            "cuda" | "gpu" => Ok(Self::Cuda(0)),
            "wgpu" => Ok(Self::Wgpu(None)),
            other => {
                let index =
                    |prefix: &str| other.strip_prefix(prefix).map(|n| n.parse::<usize>().map_err(|_| unknown()));
                if let Some(n) = index("cuda:") {
                    n.map(Self::Cuda)
                } else if let Some(n) = index("wgpu:") {
                    n.map(|n| Self::Wgpu(Some(n)))
                } else {
                    Err(unknown())
                }
            }
        }
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Cpu => write!(f, "cpu"),
            Self::Cuda(n) => write!(f, "cuda:{n}"),
            Self::Wgpu(None) => write!(f, "wgpu"),
            Self::Wgpu(Some(n)) => write!(f, "wgpu:{n}"),
        }
    }
}

/// The backends this binary was built with, for `lora --version` and `lora bench`.
pub const BACKENDS: &str = match (cfg!(feature = "cuda"), cfg!(feature = "wgpu")) {
    (false, false) => "cpu",
    (true, false) => "cpu, cuda",
    (false, true) => "cpu, wgpu",
    (true, true) => "cpu, cuda, wgpu",
};

/// `lora --version`: the version and the backends built in.
pub const VERSION: &str = match (cfg!(feature = "cuda"), cfg!(feature = "wgpu")) {
    (false, false) => concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu)"),
    (true, false) => concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda)"),
    (false, true) => concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, wgpu)"),
    (true, true) => concat!(env!("CARGO_PKG_VERSION"), " (backends: cpu, cuda, wgpu)"),
};

/// Why a device cannot be used: what was asked, and what this build or machine has.
#[derive(Debug, thiserror::Error)]
pub enum DeviceError {
    #[error("{spec} requested, but this binary was built without the `{feature}` feature")]
    NotBuilt { spec: DeviceSpec, feature: &'static str },
    #[error("no CUDA driver found (libcuda.so could not be loaded)")]
    NoCudaDriver,
    #[error("the working directory: {0}")]
    WorkingDirectory(#[source] std::io::Error),
    /// A `cubecl.toml`, or a `burn.toml` with a `[cubecl]` table, that CubeCL would read and
    /// could not (it panics on one).
    #[error("{}: not a CubeCL config: {source}", path.display())]
    CubeClConfig {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    /// `--device wgpu:N` past the adapters there are (`count` says how many, `listed` which).
    #[error("--device wgpu:{index}: {count}: {listed}")]
    NoSuchAdapter { index: usize, count: String, listed: String },
    #[error("no {backend} adapter found for --device wgpu: no GPU driver answered{hint}")]
    NoAdapter { backend: String, hint: &'static str },
    #[error("the adapter list changed while an adapter was chosen")]
    AdapterListChanged,
}

/// Whether this build can run on `spec`: `Err` says why not, in one line.
pub fn check_available(spec: DeviceSpec) -> Result<(), DeviceError> {
    match spec {
        DeviceSpec::Cpu => Ok(()),
        DeviceSpec::Cuda(_) if !cfg!(feature = "cuda") => Err(DeviceError::NotBuilt { spec, feature: "cuda" }),
        DeviceSpec::Cuda(_) => cuda::check(),
        DeviceSpec::Wgpu(_) if !cfg!(feature = "wgpu") => Err(DeviceError::NotBuilt { spec, feature: "wgpu" }),
        // The adapter is looked for when the device is opened (`wgpu::open`).
        DeviceSpec::Wgpu(_) => Ok(()),
    }
}

/// Where compiled GPU kernels are kept between runs, given a way to read the environment:
/// `LORA_KERNEL_CACHE` (a directory, or `off` for none), else `$XDG_CACHE_HOME/lora/kernels`,
/// else `$HOME/.cache/lora/kernels`.
///
/// Burn's GPU backends generate and compile their kernels while a run goes (CUDA through NVRTC;
/// wgpu's Vulkan through CubeCL's SPIR-V, then the driver); a LoRA training step needs hundreds
/// of them, so without a cache every run pays that again.
pub fn kernel_cache_dir(env: impl Fn(&str) -> Option<OsString>) -> Option<PathBuf> {
    let set = |name: &str| env(name).filter(|v| !v.is_empty());
    if let Some(dir) = set("LORA_KERNEL_CACHE") {
        return (dir != "off").then(|| PathBuf::from(dir));
    }
    let xdg = set("XDG_CACHE_HOME").map(PathBuf::from).filter(|p| p.is_absolute());
    let base = xdg.or_else(|| set("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
    Some(base.join("lora").join("kernels"))
}

#[cfg(any(feature = "cuda", feature = "wgpu"))]
pub use gpu::use_kernel_cache;

/// How many GPU kernels this process has compiled so far (kernels read back from the cache are
/// not counted); `None` where nothing counts them: a CPU run, or a CubeCL config that logs
/// compilations elsewhere.
pub fn kernels_compiled() -> Option<usize> {
    #[cfg(any(feature = "cuda", feature = "wgpu"))]
    return gpu::kernels_compiled();
    #[cfg(not(any(feature = "cuda", feature = "wgpu")))]
    None
}

#[cfg(feature = "cuda")]
pub use cuda::CudaUnfused;

#[cfg(any(feature = "cuda", feature = "wgpu"))]
mod gpu {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

    use cubecl::config::cache::CacheConfig;
    use cubecl::config::compilation::CompilationLogLevel;
    use cubecl::config::{CubeClRuntimeConfig, RuntimeConfig};
    use cubecl_common::config::logger::LogCrateLevel;

    use super::DeviceError;

    /// Turns on CubeCL's compiled-kernel cache in [`super::kernel_cache_dir`], with the autotune
    /// results beside it, unless a `cubecl.toml` (or `burn.toml`) already names a kernel cache,
    /// and counts the kernels compiled ([`kernels_compiled`]). Call before the first GPU device
    /// is made; later calls, and calls after CubeCL has read its config, change nothing.
    /// Returns the directory in use, if any; `Err` names a config file CubeCL could not read.
    pub fn use_kernel_cache() -> Result<Option<PathBuf>, DeviceError> {
        let mut slot = CubeClRuntimeConfig::storage().lock();
        if slot.is_none() {
            let here = std::env::current_dir().map_err(DeviceError::WorkingDirectory)?;
            check_config_files(&here)?;
            // What `CubeClRuntimeConfig::get` would load: the nearest cubecl.toml, then CUBECL_* variables.
            let config = CubeClRuntimeConfig::from_current_dir().override_from_env();
            let dir = super::kernel_cache_dir(|k| std::env::var_os(k)).filter(|dir| match writable(dir) {
                Ok(()) => true,
                Err(e) => {
                    crate::console::err(format!(
                        "warning: the kernel cache {} cannot be written ({e}): kernels are compiled without one \
                         (LORA_KERNEL_CACHE=DIR names another, `off` none)",
                        dir.display()
                    ));
                    false
                }
            });
            let (config, counted) = counting_compilations(with_kernel_cache(config, dir));
            *slot = Some(Arc::new(config));
            // Only CubeCL's messages reach the counter; everything else is filtered out early.
            if counted && log::set_logger(&CompileCounter).is_ok() {
                log::set_max_level(log::LevelFilter::Info);
                COUNTING.store(true, Ordering::Relaxed);
            }
        }
        Ok(slot.as_ref().and_then(|c| c.compilation.cache.as_ref()).map(CacheConfig::root))
    }

    /// Whether files can be made in `dir` (made if missing): CubeCL panics on a cache it cannot
    /// write.
    fn writable(dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let probe = dir.join(format!(".lora-write-test-{}", std::process::id()));
        std::fs::OpenOptions::new().write(true).create(true).truncate(true).open(&probe)?;
        std::fs::remove_file(&probe)
    }

    /// The config file CubeCL would read from `dir` or above (the first `cubecl.toml`, else a
    /// `burn.toml` with a `[cubecl]` table, nearest first) must parse: CubeCL panics on one that
    /// does not, so it is checked here first and named in the error.
    fn check_config_files(dir: &Path) -> Result<(), DeviceError> {
        let bad = |path: &Path, source: toml::de::Error| DeviceError::CubeClConfig { path: path.to_path_buf(), source };
        for dir in dir.ancestors() {
            for name in ["cubecl.toml", "CubeCL.toml"] {
                let path = dir.join(name);
                if let Ok(text) = std::fs::read_to_string(&path) {
                    return toml::from_str::<CubeClRuntimeConfig>(&text).map(drop).map_err(|e| bad(&path, e));
                }
            }
            for name in ["burn.toml", "Burn.toml"] {
                let path = dir.join(name);
                let Ok(text) = std::fs::read_to_string(&path) else { continue };
                let mut table = toml::from_str::<toml::Table>(&text).map_err(|e| bad(&path, e))?;
                if let Some(section) = table.remove("cubecl") {
                    return section.try_into::<CubeClRuntimeConfig>().map(drop).map_err(|e| bad(&path, e));
                }
            }
        }
        Ok(())
    }

    /// [`super::kernels_compiled`]: CubeCL names each compilation to the `log` crate, and
    /// [`CompileCounter`] counts them, once [`use_kernel_cache`] has set that up.
    pub(super) fn kernels_compiled() -> Option<usize> {
        COUNTING.load(Ordering::Relaxed).then(|| COMPILED.load(Ordering::Relaxed))
    }

    static COMPILED: AtomicUsize = AtomicUsize::new(0);
    static COUNTING: AtomicBool = AtomicBool::new(false);

    /// The process's `log` logger: counts CubeCL's compilation messages, drops everything else.
    struct CompileCounter;

    impl log::Log for CompileCounter {
        fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
            metadata.level() <= log::Level::Info && metadata.target().starts_with("cubecl")
        }

        fn log(&self, record: &log::Record<'_>) {
            if self.enabled(record.metadata())
                && record
                    .args()
                    .as_str()
                    .map_or_else(|| record.args().to_string().starts_with(COMPILING), |s| s.starts_with(COMPILING))
            {
                COMPILED.fetch_add(1, Ordering::Relaxed);
            }
        }

        fn flush(&self) {}
    }

    /// How CubeCL's basic compilation log starts each kernel's line.
    const COMPILING: &str = "[Compiling kernel]";

    /// `config` with CubeCL's compilation log at its basic level (a line per kernel compiled,
    /// no source) sent to the `log` crate, unless the config already logs compilations
    /// somewhere (a user's `CUBECL_DEBUG_LOG`, say: then nothing is counted). The flag says
    /// whether the messages will come.
    fn counting_compilations(mut config: CubeClRuntimeConfig) -> (CubeClRuntimeConfig, bool) {
        let logger = &mut config.compilation.logger;
        let free = matches!(logger.level, CompilationLogLevel::Disabled);
        if free {
            logger.level = CompilationLogLevel::Basic;
            logger.log = Some(LogCrateLevel::Info);
        }
        (config, free)
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
        fn compilations_are_counted_unless_the_config_logs_them_elsewhere() {
            let (config, counted) = counting_compilations(CubeClRuntimeConfig::default());
            assert!(counted);
            assert!(matches!(config.compilation.logger.level, CompilationLogLevel::Basic));
            assert_eq!(config.compilation.logger.log, Some(LogCrateLevel::Info));

            let mut theirs = CubeClRuntimeConfig::default();
            theirs.compilation.logger.level = CompilationLogLevel::Full;
            theirs.compilation.logger.stderr = true;
            let (config, counted) = counting_compilations(theirs);
            assert!(!counted, "a user's compilation log is left as it is");
            assert!(matches!(config.compilation.logger.level, CompilationLogLevel::Full));
            assert_eq!(config.compilation.logger.log, None);
        }

        #[test]
        fn the_counter_counts_cubecl_compilation_lines_only() {
            let count = |target: &str, level: log::Level, text: &str| {
                let before = COMPILED.load(Ordering::Relaxed);
                log::Log::log(
                    &CompileCounter,
                    &log::Record::builder().target(target).level(level).args(format_args!("{text}")).build(),
                );
                COMPILED.load(Ordering::Relaxed) - before
            };
            let cubecl = "cubecl_common::config::logger";
            assert_eq!(count(cubecl, log::Level::Info, "[Compiling kernel] matmul"), 1);
            assert_eq!(count(cubecl, log::Level::Info, "Fastest result matmul"), 0);
            assert_eq!(count("wgpu_core::device", log::Level::Info, "[Compiling kernel] x"), 0);
            assert_eq!(count(cubecl, log::Level::Trace, "[Compiling kernel] x"), 0);
        }

        #[test]
        fn a_config_file_cubecl_cannot_read_is_named() {
            let root = tempfile::tempdir().unwrap();
            let inner = root.path().join("a/b");
            std::fs::create_dir_all(&inner).unwrap();
            assert!(check_config_files(&inner).is_ok());

            std::fs::write(root.path().join("cubecl.toml"), "[compilation]\ncache = 3\n").unwrap();
            let err = check_config_files(&inner).unwrap_err().to_string();
            assert!(err.contains("cubecl.toml") && err.contains("not a CubeCL config"), "{err}");

            // The nearest file decides: a good burn.toml [cubecl] table below the bad file wins.
            std::fs::write(root.path().join("a/burn.toml"), "[cubecl.autotune]\nlevel = \"minimal\"\n").unwrap();
            assert!(check_config_files(&inner).is_ok());
            std::fs::write(root.path().join("a/burn.toml"), "[cubecl]\nautotune = 1\n").unwrap();
            assert!(check_config_files(&inner).unwrap_err().to_string().contains("burn.toml"));
            // A burn.toml without a [cubecl] table is not CubeCL's: the search goes on upwards.
            std::fs::write(root.path().join("a/burn.toml"), "[other]\nx = 1\n").unwrap();
            assert!(check_config_files(&inner).unwrap_err().to_string().contains("cubecl.toml"));
        }
    }
}

#[cfg(feature = "cuda")]
mod cuda {
    /// Burn's CUDA backend without its operation fusion (`burn::backend::Cuda` is this inside
    /// `Fusion`): one generic kernel per operation, expected to mean fewer kernels to compile
    /// (not yet measured on a GPU).
    pub type CudaUnfused<F = f32> = burn_cubecl::CubeBackend<cubecl::cuda::CudaRuntime, F, i32, u8>;

    /// Loads the driver library by hand: Burn would panic without one.
    pub(super) fn check() -> Result<(), super::DeviceError> {
        // SAFETY: `is_culib_present` only tries to dlopen libcuda and reports whether it could.
        #[allow(unsafe_code)]
        let present = unsafe { cudarc::driver::sys::is_culib_present() };
        if present { Ok(()) } else { Err(super::DeviceError::NoCudaDriver) }
    }
}

#[cfg(feature = "wgpu")]
pub mod wgpu {
    //! Opening a wgpu device without Burn's panics: the adapters are listed first, and asking
    //! for one that is not there is an error naming what was looked for and what was found.

    use burn::backend::wgpu::{RuntimeOptions, WgpuDevice, WgpuSetup, graphics::GraphicsApi};
    use cubecl::wgpu::AutoGraphicsApi;
    use wgpu::{Adapter, Backend, DeviceType, InstanceFlags};

    use super::DeviceError;

    /// Burn's wgpu backend without its operation fusion (`burn::backend::Wgpu` is this inside
    /// `Fusion`): one generic kernel per operation.
    pub type WgpuUnfused<F = f32> = burn_cubecl::CubeBackend<cubecl::wgpu::WgpuRuntime, F, i32, u32>;

    /// The adapter `index` asks for (see [`super::DeviceSpec::Wgpu`]), set up for Burn, and a
    /// line naming it. Call once per process, after [`super::use_kernel_cache`].
    pub fn open(index: Option<usize>) -> Result<(WgpuDevice, String), DeviceError> {
        let backend = AutoGraphicsApi::backend();
        // No validation layers unless WGPU_VALIDATION / WGPU_DEBUG ask (CubeCL turns them on
        // whenever compilations are logged, which is how kernels are counted).
        let instance = wgpu::Instance::new(wgpu::InstanceDescriptor {
            backends: backend.into(),
            flags: InstanceFlags::empty().with_env(),
            ..wgpu::InstanceDescriptor::new_without_display_handle()
        });
        let adapters = cubecl::future::block_on(instance.enumerate_adapters(backend.into()));
        let listed = describe_all(&adapters);
        let chosen = match index {
            None => preferred(&adapters),
            Some(n) => (n < adapters.len()).then_some(n),
        };
        let Some(chosen) = chosen else {
            return Err(match index {
                Some(index) if !adapters.is_empty() => {
                    let count = match adapters.len() {
                        1 => format!("there is only 1 {backend} adapter"),
                        k => format!("there are {k} {backend} adapters"),
                    };
                    DeviceError::NoSuchAdapter { index, count, listed }
                }
                _ => DeviceError::NoAdapter {
                    backend: backend.to_string(),
                    hint: if backend == Backend::Vulkan {
                        " (on Linux: a Vulkan driver and its loader, e.g. Debian's mesa-vulkan-drivers and \
                         libvulkan1; `vulkaninfo --summary` lists what Vulkan sees)"
                    } else {
                        ""
                    },
                },
            });
        };
        let adapter = adapters.into_iter().nth(chosen).ok_or(DeviceError::AdapterListChanged)?;
        let name = format!("wgpu:{chosen} {}", describe(&adapter));
        let device = match backend {
            Backend::Vulkan => setup_vulkan(instance, adapter, backend),
            _ => None,
        };
        let device = match device {
            Some(setup) => burn::backend::wgpu::init_device(setup, RuntimeOptions::default()),
            // Metal, DX12, or a Vulkan adapter without what CubeCL's SPIR-V needs: CubeCL picks
            // the device itself (its own adapter order), on the same graphics API.
            None => {
                let device = WgpuDevice::DefaultDevice;
                burn::backend::wgpu::init_setup::<AutoGraphicsApi>(&device, RuntimeOptions::default());
                device
            }
        };
        Ok((device, name))
    }

    /// Vulkan through CubeCL's SPIR-V compiler (and its kernel cache), on the adapter chosen
    /// here; `None` where the adapter lacks what that compiler needs.
    fn setup_vulkan(instance: wgpu::Instance, adapter: Adapter, backend: Backend) -> Option<WgpuSetup> {
        let (device, queue) = cubecl::future::block_on(cubecl::wgpu::vulkan::request_vulkan_device(&adapter))?;
        Some(WgpuSetup { instance, adapter, device, queue, backend })
    }

    /// The first discrete GPU, else integrated, virtual, other, and last a CPU driver.
    fn preferred(adapters: &[Adapter]) -> Option<usize> {
        let rank = |t: DeviceType| match t {
            DeviceType::DiscreteGpu => 0,
            DeviceType::IntegratedGpu => 1,
            DeviceType::VirtualGpu => 2,
            DeviceType::Other => 3,
            DeviceType::Cpu => 4,
        };
        (0..adapters.len()).min_by_key(|&i| rank(adapters[i].get_info().device_type))
    }

    fn describe(adapter: &Adapter) -> String {
        let info = adapter.get_info();
        let kind = match info.device_type {
            DeviceType::DiscreteGpu => "discrete GPU",
            DeviceType::IntegratedGpu => "integrated GPU",
            DeviceType::VirtualGpu => "virtual GPU",
            DeviceType::Cpu => "CPU driver",
            DeviceType::Other => "other",
        };
        let driver = [info.driver.as_str(), info.driver_info.as_str()].join(" ");
        format!("{} ({kind}, {}, {})", info.name, info.backend, driver.trim())
    }

    fn describe_all(adapters: &[Adapter]) -> String {
        let all: Vec<String> = adapters.iter().enumerate().map(|(i, a)| format!("wgpu:{i} {}", describe(a))).collect();
        all.join("; ")
    }
}

#[cfg(not(feature = "cuda"))]
mod cuda {
    pub(super) fn check() -> Result<(), super::DeviceError> {
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
        assert_eq!("wgpu".parse(), Ok(DeviceSpec::Wgpu(None)));
        assert_eq!(" WGPU:1".parse(), Ok(DeviceSpec::Wgpu(Some(1))));
        assert_eq!(DeviceSpec::Wgpu(Some(1)).to_string(), "wgpu:1");
        assert!("tpu".parse::<DeviceSpec>().unwrap_err().contains("cpu, cuda, cuda:N, wgpu or wgpu:N"));
        assert!("cuda:x".parse::<DeviceSpec>().is_err());
        assert!("wgpu:-1".parse::<DeviceSpec>().is_err());
        assert!("wgpu:".parse::<DeviceSpec>().is_err());
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
        assert!(check_available(DeviceSpec::Cuda(0)).unwrap_err().to_string().contains("`cuda` feature"));
    }
}
