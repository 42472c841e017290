//! `keyvault-agent migrate` on the reference repositories' example manifests (fetched once
//! into `fixtures/migrate`, see its README) and on our own StatefulSet, DaemonSet, Job and
//! CronJob: no Azure CSI volume is left, the agent fills a memory emptyDir from a ConfigMap
//! holding the unchanged SecretProviderClass, identity wiring is kept, and env vars from
//! synced Secrets are rewritten to `keyvault-agent exec` or flagged. The converted outputs
//! are also schema-validated by `make validate-manifests` (scripts/render-migrated.sh).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_yaml::Value;

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/migrate")
}

/// A fixture with its `$NAME` placeholders filled from `substitutions.env`.
fn fixture(name: &str) -> String {
    let mut text = std::fs::read_to_string(dir().join(name)).unwrap();
    let vars = std::fs::read_to_string(dir().join("substitutions.env")).unwrap();
    let mut pairs: Vec<(&str, &str)> = vars
        .lines()
        .filter(|l| !l.starts_with('#') && l.contains('='))
        .filter_map(|l| l.split_once('='))
        .collect();
    pairs.sort_by_key(|(n, _)| std::cmp::Reverse(n.len()));
    for (n, v) in pairs {
        text = text
            .replace(&format!("${{{n}}}"), v)
            .replace(&format!("${n}"), v);
    }
    text
}

struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
    docs: Vec<Value>,
}

fn migrate(input: &str, args: &[&str]) -> Run {
    let mut child = Command::new(env!("CARGO_BIN_EXE_keyvault-agent"))
        .arg("migrate")
        .args(args)
        .arg("-")
        .env_clear()
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let docs = if out.status.success() {
        serde_yaml::Deserializer::from_str(&stdout)
            .map(|d| serde::Deserialize::deserialize(d).unwrap())
            .filter(|v: &Value| !v.is_null())
            .collect()
    } else {
        Vec::new()
    };
    Run {
        code: out.status.code(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        stdout,
        docs,
    }
}

const FIXTURES: [&str; 9] = [
    "provider-workload-identity-pod.yaml",
    "provider-sync-env-deployment.yaml",
    "provider-user-assigned-msi-pod.yaml",
    "provider-ingress-tls-deployment.yaml",
    "driver-multiple-spc-pod.yaml",
    "driver-namespaced-deployment.yaml",
    "driver-gcp-pod.yaml",
    "own-statefulset-daemonset.yaml",
    "own-cronjob-job.yaml",
];

fn kind(v: &Value) -> &str {
    v["kind"].as_str().unwrap_or_default()
}

fn name(v: &Value) -> &str {
    v["metadata"]["name"].as_str().unwrap_or_default()
}

/// The pod template (metadata and spec) of a workload document.
fn template(v: &Value) -> Option<&Value> {
    match kind(v) {
        "Pod" => Some(v),
        "CronJob" => Some(&v["spec"]["jobTemplate"]["spec"]["template"]),
        "Deployment" | "StatefulSet" | "DaemonSet" | "Job" => Some(&v["spec"]["template"]),
        _ => None,
    }
}

fn seq(v: &Value) -> &[Value] {
    v.as_sequence().map(Vec::as_slice).unwrap_or_default()
}

fn containers(spec: &Value) -> Vec<&Value> {
    seq(&spec["initContainers"])
        .iter()
        .chain(seq(&spec["containers"]))
        .collect()
}

fn agents(spec: &Value) -> Vec<&Value> {
    containers(spec)
        .into_iter()
        .filter(|c| c["image"].as_str() == Some("keyvault-agent:0.1.0"))
        .collect()
}

fn find<'a>(docs: &'a [Value], k: &str, n: &str) -> &'a Value {
    docs.iter()
        .find(|d| kind(d) == k && name(d) == n)
        .unwrap_or_else(|| panic!("no {k} {n} in {docs:?}"))
}

fn strs(v: &Value) -> Vec<&str> {
    seq(v).iter().filter_map(Value::as_str).collect()
}

/// The original SecretProviderClass documents of the input, by name, as text.
fn spc_texts(input: &str) -> Vec<(String, String)> {
    input
        .split("\n---\n")
        .filter(|d| d.contains("kind: SecretProviderClass"))
        .map(|d| {
            let v: Value = serde_yaml::from_str(d).unwrap();
            (
                name(&v).to_owned(),
                v["spec"]["provider"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect()
}

// reference: issue 11 item 7 (emptyDir Memory, the agent, a ConfigMap holding the unchanged SPC)
#[test]
fn every_fixture_converts_in_every_mode_with_no_azure_csi_volume_left() {
    for f in FIXTURES {
        let input = fixture(f);
        let ns_args: &[&str] = if f == "driver-namespaced-deployment.yaml" {
            &["--namespace", "test-ns"]
        } else {
            &[]
        };
        for mode in ["init", "native-sidecar", "sidecar"] {
            let mut args = vec!["--mode", mode];
            args.extend_from_slice(ns_args);
            let run = migrate(&input, &args);
            assert_eq!(run.code, Some(0), "{f} {mode}: {}", run.stderr);
            let azure: Vec<String> = spc_texts(&input)
                .into_iter()
                .filter(|(_, p)| p == "azure")
                .map(|(n, _)| n)
                .collect();
            let mut converted_pods = 0;
            for d in &run.docs {
                assert_ne!(
                    (kind(d), d["spec"]["provider"].as_str()),
                    ("SecretProviderClass", Some("azure")),
                    "{f} {mode}: an Azure SecretProviderClass mounted by the input is left"
                );
                let Some(t) = template(d) else { continue };
                let spec = &t["spec"];
                let csi: Vec<&Value> = seq(&spec["volumes"])
                    .iter()
                    .filter(|v| v["csi"]["driver"].as_str() == Some("secrets-store.csi.k8s.io"))
                    .collect();
                for v in &csi {
                    let class = v["csi"]["volumeAttributes"]["secretProviderClass"]
                        .as_str()
                        .unwrap();
                    assert!(
                        !azure.iter().any(|a| a == class)
                            || f == "driver-namespaced-deployment.yaml",
                        "{f} {mode}: csi volume for azure class {class} left"
                    );
                }
                let agents = agents(spec);
                if agents.is_empty() {
                    continue;
                }
                converted_pods += 1;
                for a in &agents {
                    let mounts = seq(&a["volumeMounts"]);
                    let secrets = mounts[0]["name"].as_str().unwrap();
                    let vol = seq(&spec["volumes"])
                        .iter()
                        .find(|v| v["name"].as_str() == Some(secrets))
                        .unwrap();
                    assert_eq!(vol["emptyDir"]["medium"].as_str(), Some("Memory"), "{f}");
                    let cfg = seq(&spec["volumes"])
                        .iter()
                        .find(|v| v["name"] == mounts[1]["name"])
                        .unwrap();
                    let cm_name = cfg["configMap"]["name"].as_str().unwrap();
                    let cm = find(&run.docs, "ConfigMap", cm_name);
                    let spc: Value = serde_yaml::from_str(
                        cm["data"]["secretproviderclass.yaml"].as_str().unwrap(),
                    )
                    .unwrap();
                    assert_eq!(spc["spec"]["provider"].as_str(), Some("azure"));
                    assert_eq!(format!("keyvault-agent-{}", name(&spc)), cm_name);
                    assert_eq!(mounts[1]["readOnly"].as_bool(), Some(true));
                    let args = strs(&a["args"]);
                    assert!(
                        args.iter()
                            .any(|x| x.starts_with("--config=/etc/keyvault-agent")),
                        "{args:?}"
                    );
                    assert_eq!(
                        a["securityContext"]["readOnlyRootFilesystem"].as_bool(),
                        Some(true)
                    );
                    // Application mounts of the emptyDir are read-only.
                    for c in containers(spec) {
                        if c["image"].as_str() == Some("keyvault-agent:0.1.0") {
                            continue;
                        }
                        for m in seq(&c["volumeMounts"]) {
                            if m["name"].as_str() == Some(secrets) {
                                assert_eq!(m["readOnly"].as_bool(), Some(true), "{f}: {c:?}");
                            }
                        }
                    }
                }
                let first_init = &seq(&spec["initContainers"])[0];
                let first_args = strs(&first_init["args"]);
                match mode {
                    "init" => {
                        assert!(first_args.contains(&"--once"));
                        assert!(first_init["restartPolicy"].is_null());
                    }
                    "native-sidecar" => {
                        assert_eq!(first_init["restartPolicy"].as_str(), Some("Always"));
                        assert_eq!(
                            first_init["startupProbe"]["httpGet"]["path"].as_str(),
                            Some("/readyz")
                        );
                    }
                    _ => {
                        assert!(first_args.contains(&"--once"));
                        let ends = matches!(kind(d), "Job" | "CronJob");
                        let sidecar = seq(&spec["containers"]).iter().any(|c| {
                            c["name"]
                                .as_str()
                                .is_some_and(|n| n.starts_with("keyvault-agent"))
                        });
                        assert_eq!(
                            sidecar,
                            !ends,
                            "{f} {}: a classic sidecar only where the pod does not end",
                            name(d)
                        );
                    }
                }
            }
            let expect_none = f == "driver-gcp-pod.yaml";
            assert_eq!(
                converted_pods == 0,
                expect_none,
                "{f} {mode}: {}",
                run.stdout
            );
        }
    }
}

// reference: issue 11 item 7 (the workload identity label and service account kept)
#[test]
fn workload_identity_label_and_service_account_are_kept_or_added() {
    let run = migrate(&fixture("provider-workload-identity-pod.yaml"), &[]);
    let pod = find(&run.docs, "Pod", "busybox-secrets-store-inline-wi");
    assert_eq!(
        pod["spec"]["serviceAccountName"].as_str(),
        Some("workload-identity-sa")
    );
    // The CSI driver fetched the token itself; the agent needs the webhook's injection.
    assert_eq!(
        pod["metadata"]["labels"]["azure.workload.identity/use"].as_str(),
        Some("true")
    );
    assert!(
        run.stdout
            .contains("label azure.workload.identity/use: \"true\" added"),
        "{}",
        run.stdout
    );

    let run = migrate(&fixture("own-statefulset-daemonset.yaml"), &[]);
    let sts = find(&run.docs, "StatefulSet", "db");
    let t = &sts["spec"]["template"];
    assert_eq!(t["spec"]["serviceAccountName"].as_str(), Some("db"));
    assert_eq!(
        t["metadata"]["labels"]["azure.workload.identity/use"].as_str(),
        Some("true")
    );
    assert_eq!(t["metadata"]["labels"]["app"].as_str(), Some("db"));

    // Managed identity needs no label.
    let run = migrate(&fixture("provider-user-assigned-msi-pod.yaml"), &[]);
    let pod = find(&run.docs, "Pod", "busybox-secrets-store-inline-user-msi");
    assert!(pod["metadata"]["labels"].is_null(), "{pod:?}");
}

// reference: issue 11 item 7 (secretObjects + env.valueFrom rewritten to exec mode)
#[test]
fn env_from_synced_secrets_is_rewritten_to_exec() {
    let run = migrate(&fixture("provider-sync-env-deployment.yaml"), &[]);
    let d = find(&run.docs, "Deployment", "busybox-deployment");
    let c = &seq(&d["spec"]["template"]["spec"]["containers"])[0];
    assert_eq!(
        strs(&c["command"]),
        [
            "/usr/local/bin/keyvault-agent",
            "exec",
            "--config",
            "/etc/keyvault-agent/secretproviderclass.yaml",
            "--env",
            "SECRET_USERNAME=secretalias",
            "--",
            "/bin/sleep",
            "10000"
        ]
    );
    let env_names: Vec<&str> = seq(&c["env"])
        .iter()
        .filter_map(|e| e["name"].as_str())
        .collect();
    assert!(!env_names.contains(&"SECRET_USERNAME"), "{env_names:?}");
    // nodePublishSecretRef becomes the client-secret identity, for the agent and exec.
    assert_eq!(env_names, ["AZURE_CLIENT_ID", "AZURE_CLIENT_SECRET"]);
    assert!(
        seq(&c["volumeMounts"])
            .iter()
            .any(|m| m["mountPath"].as_str() == Some("/etc/keyvault-agent"))
    );
    assert!(
        run.stderr
            .contains("must contain the agent binary at /usr/local/bin/keyvault-agent"),
        "{}",
        run.stderr
    );

    let run = migrate(&fixture("own-cronjob-job.yaml"), &["--exec-path", "/kva"]);
    let cj = find(&run.docs, "CronJob", "nightly-report");
    let c = &seq(&cj["spec"]["jobTemplate"]["spec"]["template"]["spec"]["containers"])[0];
    assert_eq!(
        strs(&c["command"]),
        [
            "/kva",
            "exec",
            "--config",
            "/etc/keyvault-agent/secretproviderclass.yaml",
            "--env",
            "REPORT_API_TOKEN=api-token",
            "--",
            "/app/report"
        ]
    );
    assert_eq!(strs(&c["args"]), ["--since", "24h"], "args are kept");
    assert_eq!(seq(&c["env"]).len(), 1, "LOG_LEVEL stays: {c:?}");
    let job = find(&run.docs, "Job", "send-once");
    let c = &seq(&job["spec"]["template"]["spec"]["containers"])[0];
    assert!(c["envFrom"].is_null(), "{c:?}");
    assert_eq!(
        strs(&c["command"])[4..],
        [
            "--env",
            "API_TOKEN=api-token",
            "--env",
            "SMTP_PASSWORD=smtp-password",
            "--",
            "/app/send"
        ]
    );
}

// reference: issue 11 item 7 (a container without command cannot be wrapped: flagged)
#[test]
fn a_container_without_command_is_flagged_and_left_alone() {
    let input = fixture("own-statefulset-daemonset.yaml");
    let run = migrate(&input, &[]);
    let sts = find(&run.docs, "StatefulSet", "db");
    let c = seq(&sts["spec"]["template"]["spec"]["containers"])
        .iter()
        .find(|c| c["name"].as_str() == Some("db"))
        .unwrap();
    assert!(c["command"].is_null());
    assert_eq!(
        c["env"][0]["valueFrom"]["secretKeyRef"]["name"].as_str(),
        Some("db-credentials")
    );
    let flagged = "container db: env DB_PASSWORD come from Secret db-credentials";
    assert!(
        run.stderr
            .contains(&format!("warning: StatefulSet data/db: {flagged}")),
        "{}",
        run.stderr
    );
    let doc = run
        .stdout
        .split("\n---\n")
        .find(|d| d.contains("kind: StatefulSet"))
        .unwrap();
    assert!(
        doc.starts_with("# Converted by `keyvault-agent migrate`"),
        "{doc}"
    );
    assert!(doc.contains(&format!("# WARNING: {flagged}")), "{doc}");
    // The agent goes before the init container that reads the files, on a free port.
    let inits = seq(&sts["spec"]["template"]["spec"]["initContainers"]);
    assert_eq!(inits[0]["name"].as_str(), Some("keyvault-agent"));
    assert_eq!(inits[1]["name"].as_str(), Some("schema"));
    assert!(
        strs(&inits[0]["args"]).contains(&"--listen=0.0.0.0:9091"),
        "9090 is the app's"
    );
    // Not converted: printed back byte for byte.
    let service = input
        .split("\n---\n")
        .find(|d| d.contains("kind: Service"))
        .unwrap();
    assert!(run.stdout.contains(service.trim_end()), "{}", run.stdout);
}

// reference: issue 11 item 7 (several classes in one pod; namespaces; other providers)
#[test]
fn several_classes_get_one_agent_each_and_other_providers_pass_through() {
    let run = migrate(&fixture("driver-multiple-spc-pod.yaml"), &[]);
    let pod = find(&run.docs, "Pod", "secrets-store-inline-multiple-crd");
    let spec = &pod["spec"];
    let names: Vec<&str> = agents(spec)
        .iter()
        .filter_map(|a| a["name"].as_str())
        .collect();
    assert_eq!(names, ["keyvault-agent", "keyvault-agent-2"]);
    let ports: Vec<u64> = agents(spec)
        .iter()
        .map(|a| a["ports"][0]["containerPort"].as_u64().unwrap())
        .collect();
    assert_eq!(ports, [9090, 9091]);
    let c = &seq(&spec["containers"])[0];
    let cmd = strs(&c["command"]);
    assert_eq!(cmd.iter().filter(|w| **w == "exec").count(), 2, "{cmd:?}");
    assert!(cmd.contains(&"/etc/keyvault-agent/azure-spc-0/secretproviderclass.yaml"));
    assert!(cmd.contains(&"SECRET_USERNAME_1=secretalias"));
    assert_eq!(cmd[cmd.len() - 2..], ["/bin/sleep", "10000"]);

    // Not azure: the whole stream is printed back unchanged, with a warning.
    let input = fixture("driver-gcp-pod.yaml");
    let run = migrate(&input, &[]);
    assert_eq!(run.stdout.replace("---\n", ""), input.replace("---\n", ""));
    assert!(
        run.stderr
            .contains("uses provider \"gcp\", not azure: left unchanged"),
        "{}",
        run.stderr
    );

    // The class is looked up in the pod's namespace: in `default` it is not azure.
    let input = fixture("driver-namespaced-deployment.yaml");
    let run = migrate(&input, &[]);
    assert!(
        agents(&find(&run.docs, "Deployment", "busybox-deployment")["spec"]["template"]["spec"])
            .is_empty()
    );
    assert!(run.stderr.contains("invalidprovider"), "{}", run.stderr);
    let run = migrate(&input, &["-n", "test-ns"]);
    let d = find(&run.docs, "Deployment", "busybox-deployment");
    assert_eq!(agents(&d["spec"]["template"]["spec"]).len(), 1);
    let cm = find(&run.docs, "ConfigMap", "keyvault-agent-azure-sync");
    assert_eq!(cm["metadata"]["namespace"].as_str(), Some("test-ns"));
    let kept = find(&run.docs, "SecretProviderClass", "azure-sync");
    assert_eq!(kept["spec"]["provider"].as_str(), Some("invalidprovider"));
}

// reference: issue 11 item 7 (flagged with a clear comment)
#[test]
fn the_ingress_tls_secret_and_the_config_map_text_are_reported() {
    let input = fixture("provider-ingress-tls-deployment.yaml");
    // The shape of the provider's docs/sample/ingress-controller-tls/ingress.yaml.
    let ingress = "---\napiVersion: networking.k8s.io/v1\nkind: Ingress\nmetadata:\n  name: ingress-tls\nspec:\n  tls:\n  - hosts: [demo.test.com]\n    secretName: ingress-tls-csi\n  rules:\n  - host: demo.test.com\n    http:\n      paths:\n      - {path: /, pathType: Prefix, backend: {service: {name: busybox-one, port: {number: 80}}}}\n";
    let run = migrate(&format!("{input}{ingress}"), &[]);
    assert!(
        run.stderr.contains("Ingress ingress-tls: its TLS Secret ingress-tls-csi was synced by secretObjects of SecretProviderClass azure-tls"),
        "{}",
        run.stderr
    );
    // The ConfigMap holds the class's text as written, comments included.
    let cm = find(&run.docs, "ConfigMap", "keyvault-agent-azure-tls");
    let text = cm["data"]["secretproviderclass.yaml"].as_str().unwrap();
    let original = input.split("\n---\n").next().unwrap();
    assert_eq!(text.trim_end(), original.trim_end());
    assert!(text.contains("# secretObjects defines the desired state"));
}

// reference: docs/threat-model.md rule 1 (outside input is bounded), rule 4 (aliases refused)
#[test]
fn bad_input_exits_3_naming_every_broken_document() {
    let run = migrate("kind: Pod\n---\na: [\n---\nb: {\n", &[]);
    assert_eq!(run.code, Some(3));
    assert!(run.stdout.is_empty());
    assert_eq!(
        run.stderr.matches("error: -: document").count(),
        2,
        "{}",
        run.stderr
    );
    let run = migrate("a: &x [1]\nb: *x\n", &[]);
    assert_eq!(run.code, Some(3));
    assert!(run.stderr.contains("alias"), "{}", run.stderr);
    let big = "a: b\n".repeat((4 << 20) / 5 + 1);
    let run = migrate(&big, &[]);
    assert_eq!(run.code, Some(3));
    assert!(
        run.stderr.contains("larger than the limit"),
        "{}",
        run.stderr
    );
}
