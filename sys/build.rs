//! Generates the libzfs / libzfs_core / libnvpair bindings with bindgen.
//!
//! Where the headers come from:
//! - Linux: `pkg-config libzfs` (Debian: `libzfslinux-dev`) and the host's
//!   `security/pam_appl.h` (Linux-PAM; Debian: `libpam0g-dev`).
//! - FreeBSD, one path whether built on FreeBSD or cross-built from another
//!   system: FreeBSD's own system headers (OpenPAM included) from a sysroot,
//!   and the OpenZFS headers from an OpenZFS source tree (base ships libzfs
//!   without its headers), parsed for the FreeBSD clang target of that
//!   sysroot (`x86_64-unknown-freebsd13.5` for a 13.5 sysroot) with the
//!   definitions FreeBSD's own libzfs build uses (`-DIN_BASE`, ...).
//!   - on FreeBSD: the sysroot is `/` and the tree is the system sources'
//!     `/usr/src/sys/contrib/openzfs`;
//!   - cross-building (TARGET differs from HOST): both come from
//!     `IOCAGED_FREEBSD_SYSROOT` and `IOCAGED_OPENZFS_SRC`, which must be
//!     set; there is no fallback to the host's headers.
//!
//!   Either variable also overrides the default on FreeBSD. Linking against
//!   the sysroot's libraries is the linker's business (tests/freebsd-cc.sh).
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
    "zpool_events_next",
    "zpool_sync_one",
    "libzfs_core_init",
    "libzfs_core_fini",
    "lzc_send",
    "lzc_send_space",
    "lzc_receive",
    "nvlist_alloc",
    "nvlist_free",
    "nvlist_add_string",
    "nvlist_lookup_string",
    "nvlist_lookup_nvlist",
    "nvlist_lookup_nvlist_array",
    "nvlist_next_nvpair",
    "nvlist_size",
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

const VARS: &[&str] = &[
    "NV_UNIQUE_NAME",
    "NV_ENCODE_NATIVE",
    "ZFS_MAXPROPLEN",
    "ZPOOL_MAXPROPLEN",
    "ZFS_MAX_DATASET_NAME_LEN",
    "ZAP_MAXVALUELEN",
];

struct Headers {
    clang_args: Vec<String>,
    version: String,
}

/// The environment variables of the FreeBSD path.
const ENV_SYSROOT: &str = "IOCAGED_FREEBSD_SYSROOT";
const ENV_OPENZFS: &str = "IOCAGED_OPENZFS_SRC";

fn main() {
    println!("cargo::rerun-if-changed=wrapper.h");
    println!("cargo::rerun-if-env-changed={ENV_OPENZFS}");
    println!("cargo::rerun-if-env-changed={ENV_SYSROOT}");
    println!("cargo::rustc-check-cfg=cfg(zfs_2_2)");

    let target_os = env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let target_arch = env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let target = env::var("TARGET").unwrap_or_default();
    let host = env::var("HOST").unwrap_or_default();
    let cross = target != host;

    // The system side: extra clang arguments for every binding (target,
    // sysroot), and the OpenZFS headers.
    let (system_args, headers) = match target_os.as_str() {
        "freebsd" => {
            let fb = FreeBsd::locate(cross, &target_arch);
            (fb.system_args(), fb.openzfs_headers())
        }
        "linux" => (Vec::new(), linux_headers()),
        other => fail(&format!("iocaged-sys: unsupported target OS `{other}` (FreeBSD and Linux only)")),
    };

    println!("cargo::rustc-env=IOCAGED_OPENZFS_VERSION={}", headers.version);
    println!("cargo::metadata=version={}", headers.version);
    if version_at_least(&headers.version, 2, 2) {
        println!("cargo::rustc-cfg=zfs_2_2");
    }

    let mut builder = bindgen::Builder::default()
        .header("wrapper.h")
        .clang_args(&system_args)
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
    pam_bindings(&out_dir, &system_args, &target_os);
}

/// The PAM functions, types and constants iocaged uses.
const PAM_FUNCTIONS: &[&str] =
    &["pam_start", "pam_set_item", "pam_authenticate", "pam_acct_mgmt", "pam_end", "pam_strerror"];
const PAM_TYPES: &[&str] = &["pam_handle_t", "pam_conv", "pam_message", "pam_response"];
/// `#define`s in Linux-PAM, members of anonymous enums in OpenPAM; the
/// crate re-exports each as a `c_int` whichever it was (src/lib.rs).
const PAM_CONSTANTS: &[&str] = &[
    "PAM_SUCCESS",
    "PAM_PROMPT_ECHO_OFF",
    "PAM_PROMPT_ECHO_ON",
    "PAM_ERROR_MSG",
    "PAM_TEXT_INFO",
    "PAM_CONV_ERR",
    "PAM_BUF_ERR",
    "PAM_RHOST",
    "PAM_DISALLOW_NULL_AUTHTOK",
];

/// PAM: the application side of `security/pam_appl.h`, which OpenPAM
/// (FreeBSD) and Linux-PAM share. Debian: `libpam0g-dev`.
fn pam_bindings(out_dir: &Path, system_args: &[String], target_os: &str) {
    println!("cargo::rerun-if-changed=pam.h");
    println!("cargo::rustc-link-lib=dylib=pam");
    // Consts, not ModuleConsts: OpenPAM's constants are members of anonymous
    // enums, which ModuleConsts would hide in `_bindgen_ty_N` modules;
    // Consts makes them top-level constants like Linux-PAM's #defines.
    let mut builder = bindgen::Builder::default()
        .header("pam.h")
        .clang_args(system_args)
        .default_enum_style(bindgen::EnumVariation::Consts)
        .layout_tests(false)
        .generate_comments(false)
        .parse_callbacks(Box::new(bindgen::CargoCallbacks::new()));
    for f in PAM_FUNCTIONS {
        builder = builder.allowlist_function(f);
    }
    for t in PAM_TYPES {
        builder = builder.allowlist_type(t);
    }
    for v in PAM_CONSTANTS {
        builder = builder.allowlist_var(v);
    }
    let hint = if target_os == "freebsd" {
        "FreeBSD's OpenPAM headers are usr/include/security in the sysroot"
    } else {
        "on Debian install libpam0g-dev"
    };
    let bindings = builder
        .generate()
        .unwrap_or_else(|e| fail(&format!("iocaged-sys: bindgen failed on security/pam_appl.h ({e}); {hint}")));
    let text = bindings.to_string();
    for c in PAM_CONSTANTS {
        if !text.contains(&format!("pub const {c}:")) {
            fail(&format!("iocaged-sys: security/pam_appl.h defines no {c} ({hint})"));
        }
    }
    let out = out_dir.join("pam.rs");
    std::fs::write(&out, text).unwrap_or_else(|e| fail(&format!("iocaged-sys: cannot write {}: {e}", out.display())));
}

/// Linux: pkg-config.
fn linux_headers() -> Headers {
    let lib = pkg_config::Config::new().atleast_version("2.1").probe("libzfs").unwrap_or_else(|e| {
        fail(&format!(
            "iocaged-sys: OpenZFS development files not found ({e}).\n\
             On Debian install `libzfslinux-dev` (bookworm-backports for 2.3; \
             tests/vm/setup.sh does this)."
        ))
    });
    // pkg-config names libzfs (and libzfs_core); nvpair is always needed too.
    println!("cargo::rustc-link-lib=dylib=nvpair");
    println!("cargo::rustc-link-lib=dylib=zfs_core");
    // OpenZFS's own userland is built with these; libspl's headers need them.
    let mut clang_args: Vec<String> = vec!["-D_GNU_SOURCE".into(), "-D_LARGEFILE64_SOURCE".into()];
    clang_args.extend(lib.include_paths.iter().map(|p| format!("-I{}", p.display())));
    for (k, v) in &lib.defines {
        clang_args.push(match v {
            Some(v) => format!("-D{k}={v}"),
            None => format!("-D{k}"),
        });
    }
    Headers { clang_args, version: lib.version }
}

/// Where FreeBSD's headers are: a sysroot (system headers, OpenPAM) and an
/// OpenZFS source tree, with the clang target they are parsed for.
struct FreeBsd {
    sysroot: PathBuf,
    openzfs: PathBuf,
    clang_target: String,
}

impl FreeBsd {
    /// On FreeBSD: `/` and `/usr/src/sys/contrib/openzfs` unless the
    /// variables say otherwise. Cross-building: the variables, required.
    fn locate(cross: bool, arch: &str) -> FreeBsd {
        let from_env = |name: &str| env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
        let (sysroot, openzfs) = (from_env(ENV_SYSROOT), from_env(ENV_OPENZFS));
        let (sysroot, openzfs) = if cross {
            match (sysroot, openzfs) {
                (Some(s), Some(o)) => (s, o),
                (s, o) => {
                    let missing: Vec<&str> = [(s.is_none(), ENV_SYSROOT), (o.is_none(), ENV_OPENZFS)]
                        .into_iter()
                        .filter_map(|(m, n)| m.then_some(n))
                        .collect();
                    fail(&format!(
                        "iocaged-sys: cross-building for FreeBSD needs FreeBSD's own headers: set {} \
                         ({ENV_SYSROOT}: a FreeBSD sysroot with usr/include and the libraries, e.g. from \
                         base.txz; {ENV_OPENZFS}: the OpenZFS source tree of the version that FreeBSD \
                         ships). The host's headers are not used for FreeBSD. tests/freebsd-build.sh \
                         shows a complete cross build.",
                        missing.join(" and ")
                    ))
                }
            }
        } else {
            (
                sysroot.unwrap_or_else(|| PathBuf::from("/")),
                openzfs.unwrap_or_else(|| PathBuf::from("/usr/src/sys/contrib/openzfs")),
            )
        };
        let param = sysroot.join("usr/include/sys/param.h");
        println!("cargo::rerun-if-changed={}", param.display());
        let text = std::fs::read_to_string(&param).unwrap_or_else(|e| {
            fail(&format!(
                "iocaged-sys: cannot read {} ({e}): {} is not a FreeBSD sysroot",
                param.display(),
                sysroot.display()
            ))
        });
        let (major, minor) = freebsd_release(&text)
            .unwrap_or_else(|| fail(&format!("iocaged-sys: no __FreeBSD_version in {}", param.display())));
        let clang_target = format!("{arch}-unknown-freebsd{major}.{minor}");
        FreeBsd { sysroot, openzfs, clang_target }
    }

    /// For every binding: the FreeBSD target and its system headers.
    fn system_args(&self) -> Vec<String> {
        vec![format!("--target={}", self.clang_target), format!("--sysroot={}", self.sysroot.display())]
    }

    /// The OpenZFS userland headers, with the definitions FreeBSD's own
    /// build of libzfs uses (src/cddl/lib/libzfs/Makefile).
    fn openzfs_headers(&self) -> Headers {
        let root = &self.openzfs;
        let probe = root.join("include/libzfs.h");
        if !probe.exists() {
            fail(&format!(
                "iocaged-sys: {} not found.\n\
                 FreeBSD ships libzfs without its headers; iocaged builds against the OpenZFS tree in \
                 the system sources. Install the source tree that matches this system in /usr/src \
                 (for example `git clone --depth 1 -b releng/14.2 https://git.FreeBSD.org/src.git /usr/src`), \
                 or point {ENV_OPENZFS} at an OpenZFS checkout of the same version.",
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
            "-DHAVE_ISSETUGID".to_string(),
            "-include".to_string(),
            root.join("include/os/freebsd/spl/sys/ccompile.h").display().to_string(),
            inc("include"),
            inc("lib/libspl/include"),
            inc("lib/libspl/include/os/freebsd"),
        ];
        let meta = root.join("META");
        println!("cargo::rerun-if-changed={}", meta.display());
        let version = std::fs::read_to_string(&meta)
            .ok()
            .and_then(|meta| meta.lines().find_map(|l| l.strip_prefix("Version:").map(|v| v.trim().to_string())))
            .unwrap_or_else(|| "unknown".to_string());
        Headers { clang_args, version }
    }
}

/// FreeBSD's release (13, 5) from `sys/param.h`'s `__FreeBSD_version`
/// (1305000: major * 100000 + minor * 1000 + patch).
fn freebsd_release(param_h: &str) -> Option<(u32, u32)> {
    let v: u32 = param_h.lines().find_map(|l| {
        let rest = l.trim_start().strip_prefix("#define")?.trim_start().strip_prefix("__FreeBSD_version")?;
        rest.split_whitespace().next()?.parse().ok()
    })?;
    Some((v / 100_000, v / 1000 % 100))
}

fn version_at_least(version: &str, major: u32, minor: u32) -> bool {
    let mut parts = version.split(['.', '-']).map(|p| p.parse::<u32>().unwrap_or(0));
    let (ma, mi) = (parts.next().unwrap_or(0), parts.next().unwrap_or(0));
    (ma, mi) >= (major, minor)
}

/// Stops the build with `msg` (cargo shows a failed build script's stderr).
fn fail(msg: &str) -> ! {
    eprintln!("{msg}");
    std::process::exit(1);
}
