//! Sets the cfgs that mark tests *ignored* (visible in cargo's summary) when
//! what they need is absent, instead of letting them pass silently:
//!
//! - `skip_gpu`: no GPU driver to be found. On Linux that is no Vulkan loader
//!   (`libvulkan.so.1`) or no installable client driver manifest (`icd.d/*.json`,
//!   or `VK_ICD_FILENAMES` / `VK_DRIVER_FILES`); macOS and Windows always have
//!   Metal / DX12. `MEMKIN_SKIP_GPU=1` forces it. `MEMKIN_REQUIRE_GPU=1` (CI)
//!   never sets it, so there a missing adapter fails the GPU tests.
//! - `skip_data`: `MEMKIN_DATA` unset or not a directory. Never set when
//!   `CI=true` or `MEMKIN_REQUIRE_DATA=1`: there the data tests fail instead.
//!
//! When the driver is found here but wgpu finds no adapter at run time, the GPU
//! tests fail, naming `MEMKIN_SKIP_GPU=1` (tests/integration/common.rs).

use std::path::{Path, PathBuf};

const ICD_DIRS: [&str; 4] = [
    "/usr/share/vulkan/icd.d",
    "/etc/vulkan/icd.d",
    "/usr/local/share/vulkan/icd.d",
    "/usr/local/etc/vulkan/icd.d",
];

const LOADER_DIRS: [&str; 6] = [
    "/usr/lib/x86_64-linux-gnu",
    "/usr/lib/aarch64-linux-gnu",
    "/usr/lib64",
    "/usr/lib",
    "/usr/local/lib",
    "/lib/x86_64-linux-gnu",
];

fn flag(name: &str) -> bool {
    std::env::var(name).is_ok_and(|v| v == "1" || v == "true")
}

/// Watches `path` for changes when it exists (a missing path would make cargo
/// rerun this script, and rebuild the crate, on every build).
fn watch(path: &Path) {
    if path.exists() {
        println!("cargo::rerun-if-changed={}", path.display());
    }
}

fn vulkan_driver_present() -> bool {
    for var in ["VK_ICD_FILENAMES", "VK_DRIVER_FILES"] {
        if std::env::var_os(var).is_some_and(|v| !v.is_empty()) {
            return true;
        }
    }
    let loader = LOADER_DIRS
        .iter()
        .any(|d| Path::new(d).join("libvulkan.so.1").exists());
    let icd = ICD_DIRS.iter().any(|d| {
        watch(Path::new(d));
        std::fs::read_dir(d).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.path().extension().is_some_and(|x| x == "json"))
        })
    });
    loader && icd
}

fn main() {
    println!("cargo::rustc-check-cfg=cfg(skip_gpu)");
    println!("cargo::rustc-check-cfg=cfg(skip_data)");
    for var in [
        "MEMKIN_SKIP_GPU",
        "MEMKIN_REQUIRE_GPU",
        "MEMKIN_DATA",
        "MEMKIN_REQUIRE_DATA",
        "CI",
        "VK_ICD_FILENAMES",
        "VK_DRIVER_FILES",
    ] {
        println!("cargo::rerun-if-env-changed={var}");
    }
    println!("cargo::rerun-if-changed=build.rs");

    let target_os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let gpu = if flag("MEMKIN_SKIP_GPU") {
        false
    } else if flag("MEMKIN_REQUIRE_GPU") {
        true
    } else {
        match target_os.as_str() {
            "macos" | "ios" | "windows" => true,
            _ => vulkan_driver_present(),
        }
    };
    if !gpu {
        println!("cargo::rustc-cfg=skip_gpu");
    }

    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_default());
    let data = std::env::var_os("MEMKIN_DATA").is_some_and(|d| {
        let dir = manifest.join(d);
        watch(&dir);
        dir.is_dir()
    });
    if !data && !flag("CI") && !flag("MEMKIN_REQUIRE_DATA") {
        println!("cargo::rustc-cfg=skip_data");
    }
}
