//! Config parsing, validation and overrides.

use super::*;

#[test]
fn given_generated_config_when_parsed_back_then_every_key_present_and_valid() {
    let text = Config::default_toml();
    for key in [
        "keepalive_interval",
        "node_offline_timeout",
        "node_expiry",
        "ack_timeout",
        "retry_initial",
        "retry_factor",
        "retry_max",
        "max_retry_attempts",
        "message_expiry",
        "max_messages_per_receiver",
        "overflow",
        "window",
        "sends_in_flight",
        "enable_compression",
        "delivered_message_retention",
        "cluster_key",
        "[api]",
        "allowed_origins = []",
        "allowed_hosts = []",
        "[stats]",
        "sample_interval",
        "retention",
        "max_stream_series",
    ] {
        assert!(text.contains(key), "{key} missing from generated config");
    }
    let c = Config::from_toml(&text, std::path::Path::new("x")).expect("parses");
    c.validate().expect("valid");
    assert_eq!(c.delivery.ack_timeout, Duration::from_secs(10));
}

#[test]
fn given_bad_values_when_validating_then_key_is_named() {
    let mut c = Config {
        node_id: "a b".into(),
        ..Config::default()
    };
    assert!(c.validate().unwrap_err().to_string().contains("node_id"));
    c.node_id = "ok".into();
    c.delivery.window = 0;
    assert!(c.validate().unwrap_err().to_string().contains("window"));
    c.delivery.window = 1024;
    c.delivery.sends_in_flight = 5000;
    assert!(c
        .validate()
        .unwrap_err()
        .to_string()
        .contains("sends_in_flight"));
    c.delivery.sends_in_flight = 2;
    let err = Config::from_toml("[delivery]\nack_timeut = \"1s\"", std::path::Path::new("f"))
        .unwrap_err();
    assert!(err.to_string().contains("ack_timeut"));
}

#[test]
fn given_overrides_when_applied_then_flags_win() {
    let mut c = Config::default();
    c.apply(&Overrides {
        node_id: Some("bob".into()),
        nats: Some("nats://127.0.0.1:1,nats://127.0.0.1:2".into()),
        join: vec!["chat:reader,news".into()],
        ..Overrides::default()
    })
    .unwrap();
    assert_eq!(c.node_id, "bob");
    assert_eq!(c.nats.urls.len(), 2);
    assert_eq!(c.join.len(), 2);
    assert_eq!(c.join[0].role, Role::Reader);
    assert_eq!(c.join[1].role, Role::Rw);
}

#[test]
fn given_durations_past_their_bounds_when_validating_then_the_key_is_named() {
    let huge = humantime::parse_duration("100000000years").unwrap();
    let two_days = Duration::from_secs(2 * 86_400);
    type Set = fn(&mut Config, Duration);
    let cases: [(&str, Set); 6] = [
        ("retry_max", |c, d| c.delivery.retry_max = d),
        ("ack_timeout", |c, d| c.delivery.ack_timeout = d),
        ("groups.ack_wait", |c, d| c.groups.ack_wait = d),
        ("groups.max_wait", |c, d| c.groups.max_wait = d),
        ("nats.ping_interval", |c, d| c.nats.ping_interval = d),
        ("message_expiry", |c, d| c.delivery.message_expiry = d),
    ];
    for (key, set) in cases {
        let mut c = Config {
            node_id: "a".into(),
            ..Config::default()
        };
        set(&mut c, huge);
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains(&format!("`{key}`")), "{key}: {err}");
        assert!(err.contains("at most"), "{key}: {err}");
    }
    // A timer of two days is too long; a TTL of two days is fine.
    let mut c = Config {
        node_id: "a".into(),
        ..Config::default()
    };
    c.delivery.retry_max = two_days;
    assert!(c.validate().unwrap_err().to_string().contains("retry_max"));
    c.delivery.retry_max = Duration::from_secs(30);
    c.delivery.message_expiry = two_days;
    c.groups.idle_ttl = two_days;
    c.validate().unwrap();
}

#[test]
fn given_api_allow_lists_when_validating_then_bad_entries_are_named() {
    let mut c = Config {
        node_id: "a".into(),
        ..Config::default()
    };
    c.api.allowed_origins = vec![
        "http://dash.example:8080".into(),
        "https://x.example".into(),
    ];
    c.api.allowed_hosts = vec!["agent.internal".into()];
    c.validate().unwrap();
    for bad in [
        "dash.example",
        "http://x.example/path",
        "null",
        "ftp://x.example",
    ] {
        c.api.allowed_origins = vec![bad.into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("api.allowed_origins"), "{bad}: {err}");
    }
    c.api.allowed_origins.clear();
    for bad in ["http://agent", "agent:80", ""] {
        c.api.allowed_hosts = vec![bad.into()];
        let err = c.validate().unwrap_err().to_string();
        assert!(err.contains("api.allowed_hosts"), "{bad}: {err}");
    }
}
