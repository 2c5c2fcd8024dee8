//! `shoal-shim`: the per-container supervisor (see the library's documentation).

fn main() {
    std::process::exit(shoal_supervisor::main_with(std::env::args_os().skip(1)));
}
