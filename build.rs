//! Build script:
//!
//! * Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//!   the directory at compile time but cannot tell cargo about new files.
//! * `DVMTOP_GIT_REV` for `dvmtop --version`: the commit this was built
//!   from (`git rev-parse --short=12 HEAD`). A tarball without `.git` (or
//!   a machine without git) still builds: the revision then reads "no git
//!   revision", unless the packager sets `DVMTOP_GIT_REV` in the build
//!   environment.
use std::process::Command;

fn git(args: &[&str]) -> Option<String> {
    let dir = std::env::var("CARGO_MANIFEST_DIR").ok()?;
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?.trim().to_owned();
    (!s.is_empty()).then_some(s)
}

fn main() {
    println!("cargo:rerun-if-changed=migrations");
    println!("cargo:rerun-if-env-changed=DVMTOP_GIT_REV");
    let rev = match std::env::var("DVMTOP_GIT_REV") {
        Ok(r) if !r.trim().is_empty() => r.trim().to_owned(),
        // Only this package's own checkout counts, not a repository that
        // happens to contain an unpacked tarball.
        _ => match git(&["rev-parse", "--show-toplevel"])
            .filter(|top| {
                std::fs::canonicalize(top).ok()
                    == std::env::var("CARGO_MANIFEST_DIR")
                        .ok()
                        .and_then(|d| std::fs::canonicalize(d).ok())
            })
            .and_then(|_| git(&["rev-parse", "--short=12", "HEAD"]))
        {
            Some(r) => {
                // A new commit or checkout moves HEAD (worktrees keep their
                // HEAD in their own git dir, branches in the common one).
                // (Only files that exist: cargo reruns the script on every
                // build for a missing one.)
                let watch = |path: String| {
                    if std::path::Path::new(&path).exists() {
                        println!("cargo:rerun-if-changed={path}");
                    }
                };
                if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]) {
                    watch(format!("{dir}/HEAD"));
                }
                if let Some(common) =
                    git(&["rev-parse", "--path-format=absolute", "--git-common-dir"])
                {
                    watch(format!("{common}/packed-refs"));
                    if let Some(head) = git(&["symbolic-ref", "-q", "HEAD"]) {
                        watch(format!("{common}/{head}"));
                    }
                }
                format!("git {r}")
            }
            None => "no git revision".to_owned(),
        },
    };
    println!("cargo:rustc-env=DVMTOP_GIT_REV={rev}");
}
