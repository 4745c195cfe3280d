//! `cargo lambda watch` as the devstack drives it, with a throwaway function built in a temporary
//! crate: how a handler error, a panic and a crashed process come back, and that a crash does
//! not leave the function dead.

use anyhow::{Context, Result};
use devstack::lambda_watch::{
    prebuild, Build, ChildOutput, InvokeError, LambdaWatch, LambdaWatchOptions,
};
use devstack::tools::{workspace_root, Tools};
use serde_json::json;
use std::path::{Path, PathBuf};
use std::time::Duration;

const MAIN: &str = r#"
use lambda_runtime::{service_fn, Error, LambdaEvent};
use serde_json::{json, Value};

#[tokio::main]
async fn main() -> Result<(), Error> {
    lambda_runtime::run(service_fn(|e: LambdaEvent<Value>| async move {
        match e.payload["mode"].as_str() {
            Some("err") => Err::<Value, Error>("handler said no".into()),
            Some("panic") => panic!("boom"),
            Some("exit") => std::process::exit(3),
            Some("env") => Ok(json!({ "greeting": std::env::var("GREETING").ok(), "profile": std::env::var("AWS_PROFILE").ok() })),
            _ => Ok(json!({ "echo": e.payload })),
        }
    }))
    .await
}
"#;

/// A one-binary crate using the workspace's locked versions, so the shared target dir has its
/// dependencies built already.
fn throwaway_crate(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        "[package]\nname = \"throwaway-fn\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n\n[dependencies]\n\
         lambda_runtime = \"1.5\"\nserde_json = \"1\"\ntokio = { version = \"1\", features = [\"macros\", \"rt-multi-thread\"] }\n",
    )?;
    std::fs::copy(workspace_root().join("Cargo.lock"), dir.join("Cargo.lock"))?;
    std::fs::write(dir.join("src/main.rs"), MAIN)?;
    Ok(())
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_panics_and_crashes_are_invocation_failures() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("fn");
    throwaway_crate(&root)?;
    let log = dir.path().join("lambda.log");
    let output = ChildOutput::LogFile(log.clone());
    prebuild(
        &root,
        &["throwaway-fn".to_owned()],
        &output,
        Build {
            target_dir: Some(&target_dir()),
            profile: None,
        },
    )
    .await?;

    let mut opts = LambdaWatchOptions::new(&root, dir.path().join("lambda.env"));
    opts.output = output;
    opts.target_dir = Some(target_dir());
    opts.env
        .insert("GREETING".into(), "it's \"quoted\" $HOME".into());
    let watch = LambdaWatch::start(&Tools::at(&workspace_root()), opts).await?;
    let outcome = exercise(&watch).await;
    if outcome.is_err() {
        eprintln!("{}", std::fs::read_to_string(&log).unwrap_or_default());
    }
    watch.shutdown().await;
    outcome
}

/// cargo-lambda quits quietly when its port is taken; the devstack must not mistake the other
/// listener for it (a port picked free can be taken before cargo-lambda binds it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_another_process_listens_on_is_not_mistaken_for_cargo_lambda() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let root = dir.path().join("fn");
    throwaway_crate(&root)?;
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let mut opts = LambdaWatchOptions::new(&root, dir.path().join("lambda.env"));
    opts.port = taken.local_addr()?.port();
    match LambdaWatch::start(&Tools::at(&workspace_root()), opts).await {
        Ok(watch) => {
            watch.shutdown().await;
            anyhow::bail!("started on a port another process listens on");
        }
        Err(e) => assert!(
            format!("{e:#}").contains("taken by another process"),
            "{e:#}"
        ),
    }
    Ok(())
}

async fn exercise(watch: &LambdaWatch) -> Result<()> {
    let f = "throwaway-fn";
    let t = Duration::from_secs(30);

    let ok = watch.invoke(f, &json!({"mode": "ok"}), t).await?;
    assert_eq!(ok, json!({"echo": {"mode": "ok"}}));

    let env = watch.invoke(f, &json!({"mode": "env"}), t).await?;
    assert_eq!(
        env["greeting"], "it's \"quoted\" $HOME",
        "env file values arrive verbatim"
    );
    assert_eq!(
        env["profile"],
        json!(null),
        "the shell's AWS_* variables do not leak"
    );

    for (mode, message) in [("err", "handler said no"), ("panic", "boom")] {
        match watch.invoke(f, &json!({ "mode": mode }), t).await {
            Err(InvokeError::Function { message: m, .. }) => {
                assert!(m.contains(message), "{mode}: {m}")
            }
            other => panic!("{mode}: expected a function error, got {other:?}"),
        }
    }

    match watch.invoke("no-such-function", &json!({}), t).await {
        Err(InvokeError::Missing { .. }) => {}
        other => panic!("expected a missing function, got {other:?}"),
    }

    // cargo-lambda never restarts a process that exited; the devstack restarts cargo-lambda.
    match watch.invoke(f, &json!({"mode": "exit"}), t).await {
        Err(InvokeError::Exited { .. }) => {}
        other => panic!("expected the process exit to fail the invocation, got {other:?}"),
    }
    let again = watch
        .invoke(f, &json!({"mode": "ok"}), t)
        .await
        .context("the function works again after a crash")?;
    assert_eq!(again, json!({"echo": {"mode": "ok"}}));
    Ok(())
}
