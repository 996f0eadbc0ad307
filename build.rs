//! Rebuild when a migration is added or changed: `sqlx::migrate!` embeds
//! the directory at compile time but cannot tell cargo about new files.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
