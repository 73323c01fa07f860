// The migrations are embedded by `sqlx::migrate!`; rebuild when one is added or changed
// (cargo cannot see files a proc macro reads).
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
