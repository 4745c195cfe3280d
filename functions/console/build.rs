//! Embeds the names of the bundled script and styles (`web/dist/manifest.json`, written by
//! `cargo xtask web`) so pages link the content-hashed files. Without a bundle the pages still
//! work, as they must without script; a warning says how to build it.

use std::path::Path;

fn main() {
    let manifest = Path::new("web/dist/manifest.json");
    println!("cargo:rerun-if-changed={}", manifest.display());
    let entries: serde_json::Map<String, serde_json::Value> = match std::fs::read_to_string(
        manifest,
    ) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
            panic!(
                "{} is not a JSON object ({e}); run `cargo xtask web` again",
                manifest.display()
            )
        }),
        Err(_) => {
            println!(
                "cargo:warning=the console's script and styles are not built: pages will have neither; run `cargo xtask web`"
            );
            serde_json::Map::new()
        }
    };
    let name = |entry: &str| match entries.get(entry).and_then(|v| v.as_str()) {
        Some(file) => format!("Some({file:?})"),
        None => "None".to_owned(),
    };
    let code = format!(
        "/// The bundled script's file name, content-hashed.\npub const SCRIPT: Option<&str> = {};\n/// The bundled styles' file name, content-hashed.\npub const STYLES: Option<&str> = {};\n",
        name("console.js"),
        name("styles.css"),
    );
    let out = std::env::var("OUT_DIR").unwrap_or_else(|_| panic!("cargo sets OUT_DIR"));
    std::fs::write(Path::new(&out).join("assets.rs"), code)
        .unwrap_or_else(|e| panic!("writing the asset names: {e}"));
}
