//! The `shoal` binary as a user runs it.

use std::path::Path;
use std::process::{Command, Output};

fn shoal(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_shoal"))
        .args(args)
        .env_remove("WEB_REPLICAS")
        .env_remove("REGISTRY")
        .output()
        .expect("the shoal binary runs")
}

fn repo_file(rel: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(rel).to_string_lossy().into_owned()
}

#[test]
fn stack_config_prints_the_example_stack() {
    let out = shoal(&[
        "stack",
        "config",
        "-c",
        &repo_file("deploy/examples/web.yml"),
        "--name",
        "demo",
        "--format",
        "json",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.is_empty(), "the example stack uses every key it writes: {stderr}");
    let stack: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(stack["name"], "demo");
    let names: Vec<_> =
        stack["services"].as_array().unwrap().iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["demo_client", "demo_web"]);
    let web = &stack["services"][1];
    assert_eq!(web["mode"]["replicas"], 3);
    assert_eq!(web["task_template"]["container"]["image"], "127.0.0.1:5000/shoal/busybox:latest");
    assert_eq!(web["endpoint_spec"]["ports"][0]["published_port"], 8080);
    assert_eq!(stack["networks"][0]["name"], "demo_default");
}

#[test]
fn stack_config_yaml_and_warnings() {
    let out =
        shoal(&["stack", "config", "-c", &repo_file("api/tests/compose/unsupported.yml"), "--name", "dev"]);
    assert!(out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: services.app.build: Shoal runs images"), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("name: dev_app"), "{stdout}");
}

#[test]
fn bad_input_is_explained() {
    let dir = std::env::temp_dir().join(format!("shoal-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("compose.yml");
    std::fs::write(&file, "services:\n  a:\n    image: busybox\n    stop_grace_period: soon\n").unwrap();
    let out = shoal(&["stack", "config", "-c", file.to_str().unwrap()]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("is not a usable stack"), "{stderr}");
    assert!(stderr.contains("services.a.stop_grace_period: invalid duration \"soon\""), "{stderr}");

    let out = shoal(&["stack", "config", "-c", "/nonexistent/compose.yml"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("cannot read the Compose file /nonexistent/compose.yml")
    );
}

#[test]
fn completions_for_bash() {
    let out = shoal(&["completions", "bash"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("stack"));
}

#[test]
fn stack_config_does_not_print_secrets() {
    let dir = std::env::temp_dir().join(format!("shoal-cli-secret-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("pw.txt"), "hunter2-hunter2").unwrap();
    let file = dir.join("compose.yml");
    std::fs::write(
        &file,
        "services:\n  a:\n    image: busybox\n    secrets: [pw]\nsecrets:\n  pw:\n    file: ./pw.txt\n",
    )
    .unwrap();
    let out = shoal(&["stack", "config", "-c", file.to_str().unwrap(), "--name", "s", "--format", "json"]);
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!stdout.contains("aHVudGVy"), "secret data printed: {stdout}");
    assert!(stdout.contains("<15 bytes, not shown>"), "{stdout}");
}
