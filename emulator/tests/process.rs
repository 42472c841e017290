//! The binary: `serve` prints one JSON ready line with working endpoints; `token` mints an
//! assertion with the state dir's issuer key that the server accepts.

use std::io::BufRead as _;
use std::process::{Command, Stdio};

use crate::common::*;

struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn serve_prints_ready_line_and_token_cli_mints_accepted_assertions() {
    let dir = tempfile::tempdir().unwrap();
    let seed = dir.path().join("seed.yaml");
    std::fs::write(&seed, SEED).unwrap();
    let state = dir.path().join("state");
    let exe = env!("CARGO_BIN_EXE_keyvault-emulator");
    let mut child = Child(
        Command::new(exe)
            .args(["serve", "--addr", "127.0.0.1:0", "--seed"])
            .arg(&seed)
            .arg("--state-dir")
            .arg(&state)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stdout = child.0.stdout.take().unwrap();
    let line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let ready: serde_json::Value = serde_json::from_str(&line).unwrap();
    for k in [
        "vault_url",
        "authority_host",
        "imds_endpoint",
        "issuer",
        "ca_file",
        "tenant_id",
        "admin_url",
        "addr",
    ] {
        assert!(ready[k].is_string(), "{k} missing in {line}");
    }
    assert_eq!(ready["vault_urls"]["demo"], ready["vault_url"]);
    let addr: std::net::SocketAddr = ready["addr"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        ready["vault_url"],
        format!("https://demo.vault.localhost:{}/", addr.port())
    );
    let ca = std::fs::read_to_string(ready["ca_file"].as_str().unwrap()).unwrap();

    let out = dir.path().join("token");
    let status = Command::new(exe)
        .args(["token", "--sub", SA, "--state-dir"])
        .arg(&state)
        .arg("--out")
        .arg(&out)
        .status()
        .unwrap();
    assert!(status.success());
    let assertion = std::fs::read_to_string(&out).unwrap();

    let c = client_for(&ca, addr);
    let url = format!(
        "{}{TENANT}/oauth2/v2.0/token",
        ready["authority_host"].as_str().unwrap()
    );
    let r = c
        .post(url)
        .form(&[
            ("client_assertion", assertion.as_str()),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_id", APP),
            ("grant_type", "client_credentials"),
            ("scope", "https://vault.localhost/.default"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
}
