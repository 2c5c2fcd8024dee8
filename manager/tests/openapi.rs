//! The committed OpenAPI document (`docs/api/openapi.json`) is what the code
//! generates. When an API change makes this fail, regenerate the file with
//! `SHOAL_WRITE_OPENAPI=1 cargo test -p shoal-manager --test openapi` and commit it.

use std::path::Path;

#[test]
fn committed_openapi_matches_the_code() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/api/openapi.json");
    let generated = shoal_manager::http::openapi_json();
    if std::env::var_os("SHOAL_WRITE_OPENAPI").is_some() {
        std::fs::write(&path, &generated).expect("write docs/api/openapi.json");
    }
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        committed == generated,
        "docs/api/openapi.json differs from the API the code serves: regenerate it with \
         `SHOAL_WRITE_OPENAPI=1 cargo test -p shoal-manager --test openapi` and commit it"
    );
}
