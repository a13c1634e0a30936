//! The client commands (README, "Command-line client") against the real binary serving on port
//! 0: a round trip of objects with `--json` parsed here, the connection settings from
//! connectionData, a config file, the environment and flags, the dictionary, flush, API
//! keys, and the exit status of each kind of failure.

use std::process::Output;

use serde_json::Value;

use crate::{contextd, free_port, serve_fresh, terminate, Served};

/// Every setting the client reads from the environment, cleared so that only a test's own
/// count.
const CLIENT_ENV: [&str; 9] = [
    "CONTEXTD_CA_FILE",
    "CONTEXTD_URL",
    "CONTEXTD_TOKEN",
    "CONTEXTD_CONNECTION_DATA",
    "CONTEXTD_CONFIG",
    "CONTEXTD_TIMEOUT_MS",
    "CONTEXTD_PROFILE",
    "CONTEXTD_PROXY",
    "CONTEXTD_LAB_MODE",
];

/// Runs `contextd ARGS` with exactly the client environment `env`.
fn run(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut command = contextd(dir);
    for name in CLIENT_ENV {
        command.env_remove(name);
    }
    command
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run contextd")
}

/// Runs a client command against `served` with its lab admin token.
fn lab(served: &Served, dir: &std::path::Path, args: &[&str]) -> Output {
    run(
        dir,
        &[
            ("CONTEXTD_URL", served.base.as_str()),
            ("CONTEXTD_TOKEN", served.lab.as_str()),
        ],
        args,
    )
}

/// The standard output of a command that must succeed.
#[track_caller]
pub(crate) fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}; stderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).expect("utf-8")
}

/// The one JSON value a `--json` command printed.
#[track_caller]
fn json(out: &Output) -> Value {
    let stdout = ok(out);
    serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("not one JSON value ({e}): {stdout}"))
}

/// Checks a failure: its exit status, one line on stderr starting `error: `, nothing on
/// stdout; returns that line.
#[track_caller]
fn fails(out: &Output, code: i32) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(code), "stderr: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn id_of(v: &Value) -> String {
    v["id"].as_str().expect("an id").to_owned()
}

#[tokio::test]
async fn cli_round_trip_create_get_search_timeline_delete() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let cli = |args: &[&str]| lab(&served, dir.path(), args);

    let created = json(&cli(&[
        "customers",
        "create",
        "--field",
        "Context_First_Name=Ada",
        "--field",
        "Context_Mobile_Phone=+1 555 0100",
        "--json",
    ]));
    let id = id_of(&created);
    assert_eq!(
        created["fieldsets"],
        serde_json::json!(["cisco.base.customer"])
    );

    let read = json(&cli(&["customers", "get", &id, "--json"]));
    assert_eq!(read["data"]["Context_First_Name"], "Ada");
    assert_eq!(read["data"]["Context_Mobile_Phone"], "+1 555 0100");
    let human = ok(&cli(&["customers", "get", &id]));
    assert!(
        human
            .lines()
            .any(|l| l.starts_with("Context_First_Name:") && l.ends_with(" Ada")),
        "{human}"
    );

    // Digits only: the value looks like a number, yet the dictionary says string.
    let found = json(&cli(&[
        "customers",
        "search",
        "--field",
        "Context_Mobile_Phone=15550100",
        "--json",
    ]));
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["items"][0]["id"], id.as_str());

    let activity = json(&cli(&[
        "activities",
        "create",
        "--customer",
        &id,
        "--media-type",
        "sms",
        "--field",
        "Context_Notes=hi",
        "--json",
    ]));
    let activity_id = id_of(&activity);
    assert_eq!(activity["fieldsets"], serde_json::json!(["cisco.base.pod"]));

    let journey = json(&cli(&["timeline", &id, "--json"]));
    let items = journey.as_array().expect("an array of timeline items");
    assert!(
        items
            .iter()
            .any(|i| i["id"] == activity_id.as_str() && i["mediaType"] == "sms"),
        "{journey}"
    );
    let table = ok(&cli(&["timeline", &id]));
    let header = table.lines().next().unwrap_or_default();
    for column in ["TIME", "CHANNEL", "REQUEST", "SUMMARY"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.lines().any(|l| l.contains("sms") && l.contains("hi")),
        "{table}"
    );

    let deleted = ok(&cli(&["activities", "delete", &activity_id]));
    assert!(deleted.contains(&activity_id), "{deleted}");
    let journey = json(&cli(&["timeline", &id, "--json"]));
    assert_eq!(journey, serde_json::json!([]), "the activity is gone");

    let missing = "01900000-0000-7000-8000-000000000000";
    let line = fails(&cli(&["customers", "get", missing]), 3);
    assert!(line.contains("not found"), "{line}");
    fails(&cli(&["activities", "delete", &activity_id]), 3);
    assert!(terminate(&mut served.child).success());
}

#[tokio::test]
async fn cli_connects_with_connection_data_a_config_file_env_and_flags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let status = |env: &[(&str, &str)], args: &[&str]| {
        let mut all = vec!["status", "--json"];
        all.extend_from_slice(args);
        run(dir.path(), env, &all)
    };

    // connectionData alone names the server and the credentials: production by default,
    // lab with --lab or CONTEXTD_LAB_MODE (after the connection test, see below).
    let data = [("CONTEXTD_CONNECTION_DATA", served.connection_data.as_str())];
    assert_eq!(
        json(&status(&data, &[]))["status"]["partition"],
        "production"
    );
    assert_eq!(
        json(&status(&data, &["--lab"]))["status"]["partition"],
        "lab"
    );
    let lab_env = [data[0], ("CONTEXTD_LAB_MODE", "true")];
    assert_eq!(json(&status(&lab_env, &[]))["status"]["partition"], "lab");
    // A token wins over a connectionData.
    let both = [
        data[0],
        ("CONTEXTD_URL", served.base.as_str()),
        ("CONTEXTD_TOKEN", served.lab.as_str()),
    ];
    assert_eq!(json(&status(&both, &[]))["partition"], "lab");

    // A config file with a dead URL and the right token…
    let dead = format!("http://127.0.0.1:{}", free_port());
    let config = dir.path().join("client.toml");
    std::fs::write(
        &config,
        format!(
            "url = \"{dead}\"\ntoken = \"{}\"\ntimeout_ms = 3000\n",
            served.lab
        ),
    )
    .expect("write config");
    let path = config.to_str().expect("utf-8 path");
    fails(&status(&[], &["--config", path]), 7);
    // …the environment overrides it, and a flag overrides both.
    let env_url = [
        ("CONTEXTD_CONFIG", path),
        ("CONTEXTD_URL", served.base.as_str()),
    ];
    assert_eq!(json(&status(&env_url, &[]))["partition"], "lab");
    let dead_env = [("CONTEXTD_CONFIG", path), ("CONTEXTD_URL", dead.as_str())];
    let flagged = status(&dead_env, &["--url", &served.base]);
    assert_eq!(json(&flagged)["status"], "ok");
    let good = format!("url = \"{}\"\ntoken = \"{}\"\n", served.base, served.lab);
    std::fs::write(&config, good).expect("write config");
    assert_eq!(json(&status(&[], &["--config", path]))["partition"], "lab");

    // No credential anywhere: a usage error naming the ways to give one, no secret shown.
    let line = fails(&status(&[("CONTEXTD_URL", served.base.as_str())], &[]), 2);
    for way in [
        "--token",
        "CONTEXTD_TOKEN",
        "CONTEXTD_CONNECTION_DATA",
        "config file",
    ] {
        assert!(line.contains(way), "{way} missing: {line}");
    }
    let typo = dir.path().join("typo.toml");
    std::fs::write(&typo, format!("urll = \"x\"\ntoken = \"{}\"\n", served.lab))
        .expect("write config");
    let line = fails(
        &status(&[], &["--config", typo.to_str().expect("utf-8")]),
        2,
    );
    assert!(
        line.contains("urll") && !line.contains(&served.lab),
        "{line}"
    );
    assert!(terminate(&mut served.child).success());
}

#[tokio::test]
async fn cli_dictionary_typed_values_flush_and_api_keys() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let cli = |args: &[&str]| lab(&served, dir.path(), args);

    ok(&cli(&[
        "fields",
        "create",
        "Test_Visits",
        "--data-type",
        "integer",
        "--classification",
        "UNENCRYPTED",
        "--searchable",
        "--description",
        "Visits to the shop",
        "--translation",
        "en_US=Visits",
    ]));
    let field = json(&cli(&["fields", "get", "Test_Visits", "--json"]));
    assert_eq!(field["dataType"], "integer");
    assert_eq!(field["classification"], "UNENCRYPTED");
    assert_eq!(field["searchable"], true);
    assert_eq!(field["translations"]["en_US"], "Visits");
    let updated = json(&cli(&[
        "fields",
        "update",
        "Test_Visits",
        "--description",
        "Shop visits",
        "--json",
    ]));
    assert_eq!(updated["description"], "Shop visits");
    assert_eq!(updated["dataType"], "integer", "other properties stay");
    let fields = json(&cli(&["fields", "list", "--json"]));
    assert!(fields
        .as_array()
        .expect("array")
        .iter()
        .any(|f| f["id"] == "Test_Visits"));
    ok(&cli(&[
        "fieldsets",
        "create",
        "test.loyalty",
        "--field",
        "Test_Visits",
    ]));
    let set = json(&cli(&["fieldsets", "get", "test.loyalty", "--json"]));
    assert_eq!(set["fields"], serde_json::json!(["Test_Visits"]));

    // An integer field gets a JSON number; searching by it finds the customer.
    let customer = json(&cli(&[
        "customers",
        "create",
        "--fieldset",
        "cisco.base.customer",
        "--fieldset",
        "test.loyalty",
        "--field",
        "Test_Visits=3",
        "--field",
        "Context_First_Name=Bo",
        "--json",
    ]));
    assert_eq!(customer["data"]["Test_Visits"], 3);
    let found = json(&cli(&[
        "customers",
        "search",
        "--field",
        "Test_Visits=3",
        "--json",
    ]));
    assert_eq!(found["items"][0]["id"], customer["id"]);

    let flushed = json(&cli(&["flush", "customers", "--json"]));
    assert_eq!(flushed["completed"], true, "{flushed}");
    assert_eq!(flushed["flushed"], 1, "{flushed}");
    fails(&cli(&["customers", "get", &id_of(&customer)]), 3);

    // API keys over HTTP beside the operator's `keys rotate`: a new key works at once, and
    // not after it is revoked.
    let key = json(&cli(&["keys", "create", "ci", "--role", "agent", "--json"]));
    let token = key["token"].as_str().expect("the token, once").to_owned();
    let listed = json(&cli(&["keys", "list", "--json"]));
    let entry = listed
        .as_array()
        .expect("array")
        .iter()
        .find(|k| k["id"] == key["id"])
        .cloned()
        .expect("listed");
    assert!(entry.get("token").is_none(), "no secret in the list");
    let as_agent = |args: &[&str]| {
        run(
            dir.path(),
            &[
                ("CONTEXTD_URL", served.base.as_str()),
                ("CONTEXTD_TOKEN", token.as_str()),
            ],
            args,
        )
    };
    ok(&as_agent(&["status"]));
    ok(&cli(&["keys", "revoke", &id_of(&key)]));
    fails(&as_agent(&["status"]), 6);
    let audit = json(&cli(&["audit", "--action", "key.create", "--json"]));
    assert!(
        !audit["items"].as_array().expect("items").is_empty(),
        "{audit}"
    );
    assert!(terminate(&mut served.child).success());
}

#[tokio::test]
async fn cli_exit_status_follows_the_kind_of_failure() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let cli = |args: &[&str]| lab(&served, dir.path(), args);

    let id = id_of(&json(&cli(&[
        "customers",
        "create",
        "--field",
        "Context_First_Name=Cy",
        "--json",
    ])));
    let v2 = json(&cli(&[
        "customers",
        "update",
        &id,
        "--field",
        "Context_City=Oslo",
        "--version",
        "1",
        "--json",
    ]));
    assert_eq!(v2["version"], 2);
    assert_eq!(v2["data"]["Context_City"], "Oslo");
    assert_eq!(
        v2["data"]["Context_First_Name"], "Cy",
        "a merge patch keeps the rest"
    );

    // 4: conflict (a stale version).
    let stale = [
        "customers",
        "update",
        &id,
        "--field",
        "Context_City=Bergen",
        "--version",
        "1",
    ];
    let line = fails(&cli(&stale), 4);
    assert!(line.contains("version 2"), "{line}");
    // 5: invalid input (a field of no field set of the object).
    let line = fails(
        &cli(&["customers", "create", "--field", "No_Such_Field=x"]),
        5,
    );
    assert!(line.contains("No_Such_Field"), "{line}");
    // 6: a bad token.
    let bad = [
        ("CONTEXTD_URL", served.base.as_str()),
        ("CONTEXTD_TOKEN", "ctxd_wrong"),
    ];
    let line = fails(&run(dir.path(), &bad, &["customers", "get", &id]), 6);
    assert!(
        line.contains("CONTEXTD_TOKEN") && !line.contains(&served.lab),
        "{line}"
    );
    // 7: nobody listening.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let unreachable = [
        ("CONTEXTD_URL", dead.as_str()),
        ("CONTEXTD_TOKEN", served.lab.as_str()),
    ];
    let line = fails(&run(dir.path(), &unreachable, &["status"]), 7);
    assert!(line.contains(&dead), "{line}");
    // 2: usage, clap's and ours.
    assert_eq!(
        cli(&["customers", "get", "not-an-id"]).status.code(),
        Some(2)
    );
    fails(&cli(&["customers", "update", &id]), 2);
    assert!(terminate(&mut served.child).success());
}

/// Checks a failed connection test: its exit status, the steps on standard output (the failed
/// one marked ✗), one `error:` line naming the step on standard error. Returns standard output.
#[track_caller]
fn test_failed(out: &Output, code: i32, step: &str) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(
        out.status.code(),
        Some(code),
        "stdout: {stdout}\nstderr: {stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(
        stderr.starts_with("error: the connection test failed at '") && stderr.contains(step),
        "{stderr}"
    );
    let failed: Vec<&str> = stdout.lines().filter(|l| l.starts_with('✗')).collect();
    assert_eq!(failed.len(), 1, "{stdout}");
    assert!(failed[0].starts_with(&format!("✗ {step}  ")), "{stdout}");
    stdout
}

#[tokio::test]
async fn cli_status_with_a_connection_data_tests_the_connection_step_by_step() {
    use base64::Engine as _;
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let status = |args: &[&str]| {
        let mut all = vec!["status"];
        all.extend_from_slice(args);
        run(dir.path(), &[], &all)
    };
    let data = served.connection_data.clone();

    // Every step passes: ✓ lines with latencies, the proxy skipped, then the status.
    let text = ok(&status(&["--connection-data", &data]));
    let lines: Vec<&str> = text.lines().collect();
    for (line, step) in lines.iter().zip([
        "✓ connectionData",
        "- proxy",
        "✓ reachability",
        "✓ credentials (production)",
        "✓ credentials (lab)",
    ]) {
        assert!(line.starts_with(step), "{step}: {text}");
    }
    assert!(
        lines[2].contains(&served.base) && lines[2].ends_with(" ms"),
        "{text}"
    );
    assert!(lines[3].contains("partition production"), "{text}");
    assert!(lines[4].contains("partition lab"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("status:")), "{text}");
    let secret = {
        let json = base64::engine::general_purpose::STANDARD
            .decode(&data)
            .expect("base64");
        let v: Value = serde_json::from_slice(&json).expect("JSON");
        v["credentials"]["clientSecret"]
            .as_str()
            .expect("a secret")
            .to_owned()
    };
    assert!(!text.contains(&secret), "no secret is shown");

    let report = json(&status(&["--connection-data", &data, "--json"]));
    assert_eq!(report["ok"], true);
    let steps = report["steps"].as_array().expect("steps");
    assert_eq!(steps.len(), 5);
    for step in steps {
        let expected = if step["step"] == "proxy" {
            "skipped"
        } else {
            "ok"
        };
        assert_eq!(step["outcome"], expected, "{step}");
    }
    assert_eq!(report["serviceUrl"], served.base.as_str());
    assert_eq!(report["status"]["partition"], "production");

    // A changed secret: refused (6), at the production credential.
    let mut changed: Value = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(&data)
            .expect("base64"),
    )
    .expect("JSON");
    changed["credentials"]["clientSecret"] = Value::String(format!("{secret}x"));
    let changed = base64::engine::general_purpose::STANDARD.encode(changed.to_string());
    let out = status(&["--connection-data", &changed]);
    let text = test_failed(&out, 6, "credentials (production)");
    assert!(text.contains("refused"), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("- credentials (lab)")),
        "{text}"
    );
    let out = status(&["--connection-data", &changed, "--json"]);
    assert_eq!(out.status.code(), Some(6));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
    assert_eq!(report["ok"], false);
    assert_eq!(report["steps"][3]["step"], "credentials (production)");
    assert_eq!(report["steps"][3]["outcome"], "failed");
    assert_eq!(report["steps"][3]["errorKind"], "unauthorized");
    assert!(report.get("status").is_none(), "{report}");

    // A proxy nobody listens on: unreachable (7), at the proxy.
    let dead = format!("http://127.0.0.1:{}", free_port());
    let text = test_failed(
        &status(&["--connection-data", &data, "--proxy", &dead]),
        7,
        "proxy",
    );
    assert!(text.contains(&dead), "{text}");
    assert!(
        text.lines().any(|l| l.starts_with("- reachability")),
        "{text}"
    );

    // Not a connectionData at all: usage (2), at the first step.
    test_failed(
        &status(&["--connection-data", "certainly not base64!"]),
        2,
        "connectionData",
    );

    // With a token, status is as it always was.
    let plain = json(&run(
        dir.path(),
        &[
            ("CONTEXTD_URL", served.base.as_str()),
            ("CONTEXTD_TOKEN", served.lab.as_str()),
        ],
        &["status", "--json"],
    ));
    assert_eq!(plain["partition"], "lab");
    assert!(plain.get("steps").is_none());
    assert!(terminate(&mut served.child).success());
}

#[tokio::test]
async fn cli_connectors_create_rotate_revoke_with_a_production_admin_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut served = serve_fresh(dir.path(), &[]).await;
    let admin = |args: &[&str]| {
        run(
            dir.path(),
            &[
                ("CONTEXTD_URL", served.base.as_str()),
                ("CONTEXTD_TOKEN", served.production.as_str()),
            ],
            args,
        )
    };
    let test_connection = |data: &str| {
        run(
            dir.path(),
            &[],
            &["status", "--connection-data", data, "--json"],
        )
    };
    let listed = |id: &str| {
        let all = json(&admin(&["connectors", "list", "--json"]));
        all.as_array()
            .expect("an array of connectors")
            .iter()
            .find(|c| c["id"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("{id} listed: {all}"))
    };

    let created = json(&admin(&[
        "connectors",
        "create",
        "ivr-1",
        "--app-type",
        "voice",
        "--version",
        "2.1",
        "--json",
    ]));
    let id = created["connector"]["id"]
        .as_str()
        .expect("the connector's id")
        .to_owned();
    assert_eq!(created["connector"]["appType"], "voice", "{created}");
    let data = created["connectionData"]
        .as_str()
        .expect("the connectionData, once")
        .to_owned();

    // The new connectionData passes every step of the connection test.
    let report = json(&test_connection(&data));
    assert_eq!(report["ok"], true, "{report}");
    for step in report["steps"].as_array().expect("steps") {
        let expected = if step["step"] == "proxy" {
            "skipped"
        } else {
            "ok"
        };
        assert_eq!(step["outcome"], expected, "{step}");
    }
    let entry = listed(&id);
    assert_eq!(entry["state"], "registered", "{entry}");
    assert_eq!(entry["version"], "2.1", "{entry}");
    assert!(entry.get("connectionData").is_none(), "no secret listed");
    let table = ok(&admin(&["connectors", "list"]));
    let header = table.lines().next().unwrap_or_default();
    for column in ["ID", "NAME", "APP TYPE", "STATE", "VERSION", "LAST SEEN"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table
            .lines()
            .any(|l| l.contains(&id) && l.contains("voice") && l.contains("registered")),
        "{table}"
    );

    // Rotated without grace: the old connectionData is refused at once, the new one works.
    let rotated = json(&admin(&[
        "connectors",
        "rotate",
        &id,
        "--grace",
        "0s",
        "--json",
    ]));
    let new_data = rotated["connectionData"]
        .as_str()
        .expect("the new connectionData")
        .to_owned();
    assert_ne!(new_data, data);
    test_failed(
        &run(dir.path(), &[], &["status", "--connection-data", &data]),
        6,
        "credentials (production)",
    );
    assert_eq!(json(&test_connection(&new_data))["ok"], true);

    // Revoked: the new connectionData is refused too, and the list says so.
    let revoked = ok(&admin(&["connectors", "revoke", &id]));
    assert!(revoked.contains(&id), "{revoked}");
    let out = test_connection(&new_data);
    assert_eq!(out.status.code(), Some(6));
    let report: Value = serde_json::from_slice(&out.stdout).expect("one JSON value");
    assert_eq!(report["ok"], false, "{report}");
    assert_eq!(listed(&id)["state"], "revoked");

    // A lab admin token may list connectors but not create one: forbidden (6).
    ok(&lab(&served, dir.path(), &["connectors", "list"]));
    let line = fails(
        &lab(
            &served,
            dir.path(),
            &["connectors", "create", "x", "--app-type", "chat"],
        ),
        6,
    );
    assert!(line.contains("production"), "{line}");
    assert!(terminate(&mut served.child).success());
}
