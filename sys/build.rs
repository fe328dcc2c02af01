//! Generates the libzfs / libzfs_core / libnvpair bindings with bindgen.
//!
//! Where the headers come from:
//! - Linux: `pkg-config libzfs` (Debian: `libzfslinux-dev`).
//! - FreeBSD: base ships the libraries but no headers; they are taken from the
//!   OpenZFS tree in the system sources, `/usr/src/sys/contrib/openzfs`
//!   (override with `IOCAGED_OPENZFS_SRC`).
//! - Type-checking for FreeBSD on a Linux host (`cargo check --target
//!   x86_64-unknown-freebsd`): the host's headers are used with the host's
//!   clang target. Nothing is linked by a check, and the items bound here have
//!   the same layout on both x86_64 systems, so this is sound for its purpose.
//!
//! Emits `cfg(zfs_2_2)` when the OpenZFS headers are 2.2 or newer, and the
//! OpenZFS version as `IOCAGED_OPENZFS_VERSION` for the crate.

use std::env;
use std::path::{Path, PathBuf};

/// Everything the project calls. Extend deliberately.
const FUNCTIONS: &[&str] = &[
    "libzfs_init",
    "libzfs_fini",
    "libzfs_errno",
    "libzfs_error_description",
    "libzfs_error_action",
    "libzfs_error_init",
    "libzfs_print_on_error",
    "zfs_open",
    "zfs_close",
    "zfs_get_name",
    "zfs_get_type",
    "zfs_name_valid",
    "zfs_dataset_exists",
    "zfs_iter_filesystems",
    "zfs_iter_snapshots",
    "zfs_prop_get",
    "zfs_prop_get_numeric",
    "zfs_prop_to_name",
    "zfs_name_to_prop",
    "zfs_prop_user",
    "zfs_prop_readonly",
    "zfs_get_user_props",
    "zfs_prop_set",
    "zfs_prop_set_list",
    "zfs_prop_inherit",
    "zfs_create",
    "zfs_snapshot",
    "zfs_clone",
    "zfs_destroy",
    "zfs_mount",
    "zfs_unmount",
    "zfs_is_mounted",
    "zfs_rename",
    "zfs_version_userland",
    "zfs_version_kernel",
    "zpool_iter",
    "zpool_open_canfail",
    "zpool_close",
    "zpool_get_history",
    "zpool_get_name",
    "zpool_get_prop",
    "zpool_set_prop",
    "libzfs_core_init",
    "libzfs_core_fini",
    "lzc_send",
    "lzc_receive",
    "nvlist_alloc",
    "nvlist_free",
    "nvlist_add_string",
    "nvlist_lookup_string",
    "nvlist_lookup_nvlist",
    "nvlist_lookup_nvlist_array",
    "nvlist_next_nvpair",
    "nvpair_name",
    "nvpair_type",
    "nvpair_value_nvlist",
    "nvpair_value_string",
];

const TYPES: &[&str] = &[
    "zfs_type_t",
    "zfs_prop_t",
    "zpool_prop_t",
    "zprop_source_t",
    "zfs_error_t",
    "renameflags_t",
    "boolean_t",
    "data_type_t",
    "lzc_send_flags",
];

const VARS: &[&str] =
    &["NV_UNIQUE_NAME", "ZFS_MAXPROPLEN", "ZPOOL_MAXPROPLEN", "ZFS_MAX_DATASET_NAME_LEN", "ZAP_MAXVALUELEN"];

struct Headers {
    clang_args: Vec<String>,
    version: String,
}

fn main() {
    println!("cargo::rerun-if-changed=wrapper.h");
    println!("cargo::rerun-if-env-changed=IOCAGED_OPENZFS_SRC");
    println!("cargo::rustc-check-cfg=cfg(zfs_2_2)");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    let cross = target != host;

    let headers = match (target_os.as_str(), cross) {
        ("freebsd", false) => freebsd_headers(),
        ("linux", _) | ("freebsd", true) => linux_headers(cross, &host),
        (other, _) => fail(&format!("iocaged-sys: unsupported target OS `{other}` (FreeBSD and Linux only)")),
    };

    println!("cargo::rustc-env=IOCAGED_OPENZFS_VERSION={}", headers.version);
    println!("cargo::metadata=version={}", headers.version);
    if version_at_least(&headers.version, 2, 2) {
        println!("cargo::rustc-cfg=zfs_2_2");
    }

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&headers.clang_args)
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .derive_default(false)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in VARS {
        builder = builder.allowlist_var(v);
    }
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| fail(&format!("iocaged-sys: bindgen failed on the OpenZFS headers: {e}")));
    let out_dir = PathBuf::from(env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    let out = out_dir.join("bindings.rs");
    bindings.write_to_file(&out).unwrap_or_else(|e| fail(&format!("iocaged-sys: cannot write {}: {e}", out.display())));
    pam_bindings(&out_dir, cross.then_some(host.as_str()));
}

/// PAM: the application side of `security/pam_appl.h`, which OpenPAM
/// (FreeBSD) and Linux-PAM share. Debian: `libpam0g-dev`.
fn pam_bindings(out_dir: &Path, cross_host: Option<&str>) {
    println!("cargo::rerun-if-changed=pam.h");
    if cross_host.is_none() {
        println!("cargo::rustc-link-lib=dylib=pam");
    }
    let mut builder = bindgen::Builder::default()
        .header("pam.h")
        .default_enum_style(bindgen::EnumVariation::ModuleConsts)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    if let Some(host) = cross_host {
        builder = builder.clang_arg(format!("--target={host}"));
    }
    for f in ["pam_start", "pam_authenticate", "pam_acct_mgmt", "pam_end", "pam_strerror"] {
        builder = builder.allowlist_function(f);
    }
    for t in ["pam_handle_t", "pam_conv", "pam_message", "pam_response"] {
        builder = builder.allowlist_type(t);
    }
    for v in [
        "PAM_SUCCESS",
        "PAM_PROMPT_ECHO_OFF",
        "PAM_PROMPT_ECHO_ON",
        "PAM_ERROR_MSG",
        "PAM_TEXT_INFO",
        "PAM_CONV_ERR",
        "PAM_BUF_ERR",
    ] {
        builder = builder.allowlist_var(v);
    }
    let bindings = builder.generate().unwrap_or_else(|e| {
        fail(&format!("iocaged-sys: bindgen failed on security/pam_appl.h ({e}); on Debian install libpam0g-dev"))
    });
    let out = out_dir.join("pam.rs");
    bindings.write_to_file(&out).unwrap_or_else(|e| fail(&format!("iocaged-sys: cannot write {}: {e}", out.display())));
}

/// Linux (and type-checking for FreeBSD from a Linux host): pkg-config.
fn linux_headers(cross: bool, host: &str) -> Headers {
    let lib = pkg_config::Config::new()
        .atleast_version("2.1")
        // A cross check links nothing; do not tell cargo to link Linux libs.
        .cargo_metadata(!cross)
        .probe("libzfs")
        .unwrap_or_else(|e| {
            fail(&format!(
                "iocaged-sys: OpenZFS development files not found ({e}).\n\
                 On Debian install `libzfslinux-dev` (bookworm-backports for 2.3; \
                 tests/vm/setup.sh does this)."
            ))
        });
    if !cross {
        // pkg-config names libzfs (and libzfs_core); nvpair is always needed too.
        println!("cargo::rustc-link-lib=dylib=nvpair");
        println!("cargo::rustc-link-lib=dylib=zfs_core");
    }
    // OpenZFS's own userland is built with these; libspl's headers need them.
    let mut clang_args: Vec<String> = vec!["-D_GNU_SOURCE".into(), "-D_LARGEFILE64_SOURCE".into()];
    clang_args.extend(lib.include_paths.iter().map(|p| format!("-I{}", p.display())));
    for (k, v) in &lib.defines {
        clang_args.push(match v {
            Some(v) => format!("-D{k}={v}"),
            None => format!("-D{k}"),
        });
    }
    if cross {
        // The host's headers only parse for the host's triple (glibc's multiarch
        // include directories); see the module comment for why that is enough.
        clang_args.push(format!("--target={host}"));
    }
    Headers { clang_args, version: lib.version }
}

/// FreeBSD, building on FreeBSD: base libzfs with headers from /usr/src.
fn freebsd_headers() -> Headers {
    let root = env::var("IOCAGED_OPENZFS_SRC").unwrap_or_else(|_| "/usr/src/sys/contrib/openzfs".to_string());
    let root = Path::new(&root);
    let probe = root.join("include/libzfs.h");
    if !probe.exists() {
        fail(&format!(
            "iocaged-sys: {} not found.\n\
             FreeBSD ships libzfs without its headers; iocaged builds against the OpenZFS tree in \
             the system sources. Install the source tree that matches this system in /usr/src \
             (for example `git clone --depth 1 -b releng/14.2 https://git.FreeBSD.org/src.git /usr/src`), \
             or point IOCAGED_OPENZFS_SRC at an OpenZFS checkout of the same version.",
            probe.display()
        ));
    }
    println!("cargo::rerun-if-changed={}", probe.display());
    for lib in ["zfs", "zfs_core", "nvpair"] {
        println!("cargo::rustc-link-lib=dylib={lib}");
    }
    let inc = |p: &str| format!("-I{}", root.join(p).display());
    let clang_args = vec![
        "-DIN_BASE".to_string(),
        "-include".to_string(),
        root.join("include/os/freebsd/spl/sys/ccompile.h").display().to_string(),
        inc("include"),
        inc("lib/libspl/include"),
        inc("lib/libspl/include/os/freebsd"),
    ];
    let version = std::fs::read_to_string(root.join("META"))
        .ok()
        .and_then(|meta| meta.lines().find_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_string())))
        .unwrap_or_else(|| "unknown".to_string());
    Headers { clang_args, version }
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

fn fail(msg: &str) -> ! {
    panic!("{msg}");
}
