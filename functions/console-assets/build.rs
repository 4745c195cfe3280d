//! Embeds the console's bundled files (`functions/console/web/dist`, built by `cargo xtask web`)
//! so that deploying the stack copies exactly this build's files to the assets bucket. Without
//! a bundle the function still builds, and a deployment fails saying how to make one.

use std::path::Path;

fn main() {
    let dist = Path::new("../console/web/dist");
    let manifest = dist.join("manifest.json");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let names: Vec<String> = std::fs::read_to_string(&manifest)
        .ok()
        .and_then(|text| {
            serde_json::from_str::<serde_json::Map<String, serde_json::Value>>(&text).ok()
        })
        .map(|entries| {
            entries
                .values()
                .filter_map(|v| v.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mut code = String::from(
        "/// This build's bundled files: name, contents.\npub const FILES: &[(&str, &[u8])] = &[\n",
    );
    for name in &names {
        let path = std::fs::canonicalize(dist.join(name)).unwrap_or_else(|e| {
            panic!(
                "{} is in the manifest but not readable ({e}); run `cargo xtask web` again",
                name
            )
        });
        println!("cargo:rerun-if-changed={}", path.display());
        code.push_str(&format!(
            "    ({name:?}, include_bytes!({:?})),\n",
            path.display().to_string()
        ));
    }
    code.push_str("];\n");
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| panic!("cargo sets OUT_DIR"));
    std::fs::write(Path::new(&out).join("bundle.rs"), code)
        .unwrap_or_else(|e| panic!("writing the bundle's list: {e}"));
}
