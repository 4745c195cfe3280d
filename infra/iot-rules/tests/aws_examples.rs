//! The examples of the AWS IoT SQL reference (iot-sql-*.html), each as a test: the rule, the
//! message, the output AWS documents.

use iot_rules::{Message, Rule};
use serde_json::{json, Value};

const NOW: i64 = 1_481_825_251_155;

fn run_on(sql: &str, topic: &str, payload: &Value) -> Option<Value> {
    let bytes = payload.to_string();
    let rule = Rule::parse(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
    rule.apply(&Message {
        topic,
        payload: bytes.as_bytes(),
        client_id: Some("device-7"),
        timestamp_ms: NOW,
    })
}

fn run(sql: &str, payload: &Value) -> Option<Value> {
    run_on(sql, "topic/subtopic", payload)
}

fn color() -> Value {
    json!({"color": "red", "temperature": 50})
}

#[test]
fn select_clause_examples() {
    let cases = [
        ("SELECT * FROM 'topic/subtopic'", json!({"color": "red", "temperature": 50})),
        ("SELECT color FROM 'topic/subtopic'", json!({"color": "red"})),
        ("SELECT color AS my_color FROM 'topic/subtopic'", json!({"my_color": "red"})),
        (
            "SELECT color as my_color, temperature as fahrenheit FROM 'topic/subtopic'",
            json!({"my_color": "red", "fahrenheit": 50}),
        ),
        (
            "SELECT *, 15 as speed FROM 'topic/subtopic'",
            json!({"color": "red", "temperature": 50, "speed": 15}),
        ),
        ("SELECT VALUE color FROM 'topic/subtopic'", json!("red")),
        (
            "SELECT (temperature - 32) * 5 / 9 AS celsius, upper(color) as my_color FROM 'topic/subtopic'",
            json!({"celsius": 10, "my_color": "RED"}),
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(run(sql, &color()), Some(expected), "{sql}");
    }
}

#[test]
fn nested_fields_aliases_and_literals() {
    let nested = json!({"color": {"red": 255, "green": 0, "blue": 0}});
    assert_eq!(
        run(
            "SELECT color.red as red_value FROM 'topic/subtopic'",
            &nested
        ),
        Some(json!({"red_value": 255}))
    );
    let foo = json!({"foo": {"bar": "RED", "bar1": "GREEN", "bar2": "BLUE"}});
    assert_eq!(
        run("SELECT foo.bar AS bar.baz FROM 'topic/subtopic'", &foo),
        Some(json!({"bar": {"baz": "RED"}})),
        "a dotted alias nests (our decision; AWS shows no output)"
    );
    let position = json!({"lat_long": [47.606, -122.332]});
    assert_eq!(
        run(
            "SELECT {'latitude': get(lat_long, 0), 'longitude': get(lat_long, 1)} as lat_long FROM 'topic/subtopic'",
            &position
        ),
        Some(json!({"lat_long": {"latitude": 47.606, "longitude": -122.332}}))
    );
    let pair = json!({"lat": 47.6, "long": -122.3});
    assert_eq!(
        run(
            "SELECT [lat, long] as lat_long FROM 'topic/subtopic'",
            &pair
        ),
        Some(json!({"lat_long": [47.6, -122.3]}))
    );
    let odd_keys = json!({"mydata": {"item2": {"0": {"my-key": "myValue"}}}});
    assert_eq!(
        run(
            r#"SELECT get(get(get(mydata, "item2"), "0"), "my-key") AS v FROM 'topic/subtopic'"#,
            &odd_keys
        ),
        Some(json!({"v": "myValue"}))
    );
    assert_eq!(
        run(
            "SELECT VALUE arr FROM 'topic/subtopic'",
            &json!({"arr": [1, 2, 3, 4]})
        ),
        Some(json!([1, 2, 3, 4])),
        "2016-03-23 allows a top-level array"
    );
}

#[test]
fn nested_queries_over_senml_records() {
    let senml = json!({"e": [
        {"n": "temperature", "u": "Cel", "t": 1234, "v": 22.5},
        {"n": "light", "u": "lm", "t": 1235, "v": 135},
        {"n": "acidity", "u": "pH", "t": 1235, "v": 7}
    ]});
    assert_eq!(
        run(
            "SELECT (SELECT VALUE n FROM e) as sensors FROM 'topic/subtopic'",
            &senml
        ),
        Some(json!({"sensors": ["temperature", "light", "acidity"]}))
    );
    assert_eq!(
        run(
            "SELECT (SELECT v FROM e WHERE n = 'temperature') as temperature FROM 'topic/subtopic'",
            &senml
        ),
        Some(json!({"temperature": [{"v": 22.5}]}))
    );
    assert_eq!(
        run("SELECT get((SELECT v FROM e WHERE n = 'temperature'), 0).v as temperature FROM 'topic/subtopic'", &senml),
        Some(json!({"temperature": 22.5}))
    );
}

#[test]
fn where_is_evaluated_first_and_must_be_true() {
    let sql = "SELECT * FROM 'topic/subtopic' WHERE temperature > 50 AND color <> 'red'";
    assert_eq!(run(sql, &json!({"color": "red", "temperature": 40})), None);
    assert_eq!(
        run(sql, &json!({"color": "blue", "temperature": 60})),
        Some(json!({"color": "blue", "temperature": 60}))
    );
    // A missing key makes the comparison Undefined, and Undefined is not true.
    assert_eq!(
        run(
            "SELECT * FROM 'topic/subtopic' WHERE humidity > 5",
            &color()
        ),
        None
    );
    assert_eq!(
        run(
            "SELECT * FROM 'topic/subtopic' WHERE NOT (humidity > 5)",
            &color()
        ),
        None
    );
    // WHERE cannot see SELECT's aliases: `c` is not in the payload.
    assert_eq!(
        run(
            "SELECT color AS c FROM 'topic/subtopic' WHERE c = 'red'",
            &color()
        ),
        None
    );
    // String comparisons and numeric strings.
    assert!(run(
        "SELECT * FROM 'topic/subtopic' WHERE '60' > temperature",
        &color()
    )
    .is_some());
    assert!(run(
        "SELECT * FROM 'topic/subtopic' WHERE 'hot' > temperature",
        &color()
    )
    .is_none());
    assert!(run(
        "SELECT * FROM 'topic/subtopic' WHERE 'TRUE' AND true",
        &color()
    )
    .is_some());
}

#[test]
fn undefined_values_are_left_out() {
    assert_eq!(
        run(
            "SELECT color, humidity, temperature / 0 AS broken FROM 'topic/subtopic'",
            &color()
        ),
        Some(json!({"color": "red"}))
    );
    assert_eq!(
        run("SELECT VALUE humidity FROM 'topic/subtopic'", &color()),
        Some(json!("")),
        "Undefined on its own is the empty string"
    );
    assert_eq!(
        run("SELECT upper(temperature) AS u, isUndefined(humidity) AS missing, isNull(x) AS n FROM 'topic/subtopic'", &color()),
        Some(json!({"missing": true, "n": false}))
    );
}

#[test]
fn operators_follow_the_type_rules() {
    let doc = json!({"s": "5", "i": 7, "d": 2.5, "b": true, "n": null, "o": {"a": 1, "b": 2}, "arr": [1, 2]});
    let cases = [
        ("i + 1", json!(8)),
        ("i / 2", json!(3)),
        ("-i / 2", json!(-3)),
        ("i % 4", json!(3)),
        ("d * 2", json!(5)),
        ("d + 0.25", json!(2.75)),
        ("s + 1", json!("51")),
        ("s - 1", json!(4)),
        ("i = 7.0", json!(true)),
        ("s = 5", json!(false)),
        ("s <> 5", json!(true)),
        ("n = null", json!(true)),
        ("o = {'b': 2, 'a': 1}", json!(true)),
        ("arr = [2, 1]", json!(false)),
        ("b AND 'false'", json!(false)),
        (
            "CASE i WHEN 1 THEN 'one' WHEN 7 THEN 'seven' ELSE 'many' END",
            json!("seven"),
        ),
        ("concat('a', i, 'b')", json!("a7b")),
        ("concat(arr, 3)", json!([1, 2, 3])),
        ("get('hello', 1)", json!("e")),
        ("abs(-2.5)", json!(2.5)),
    ];
    for (expr, expected) in cases {
        let sql = format!("SELECT {expr} AS r FROM 'topic/subtopic'");
        assert_eq!(run(&sql, &doc), Some(json!({"r": expected})), "{expr}");
    }
    for undefined in [
        "i + b",
        "i / 0",
        "b > 1",
        "CASE i WHEN 1 THEN 2 END",
        "x = 1",
        "concat()",
        "nosuchfunction(i)",
        "i AND true",
    ] {
        let sql = format!("SELECT {undefined} AS r FROM 'topic/subtopic'");
        assert_eq!(run(&sql, &doc), Some(json!({})), "{undefined}");
    }
}

#[test]
fn topic_timestamp_and_clientid() {
    let sql = "SELECT *, topic(2) AS deviceId, topic() AS t, timestamp() AS receivedAt, clientid() AS client FROM 'devices/+/telemetry'";
    assert_eq!(
        run_on(sql, "devices/d-42/telemetry", &json!({"temp": 21})),
        Some(
            json!({"temp": 21, "deviceId": "d-42", "t": "devices/d-42/telemetry", "receivedAt": NOW, "client": "device-7"})
        )
    );
    assert_eq!(
        run_on(sql, "devices/d-42/status", &json!({})),
        None,
        "FROM does not match"
    );
    let levels =
        "SELECT topic(0) AS zero, topic(1) AS one, topic(4) AS past FROM 'devices/+/telemetry'";
    assert_eq!(
        run_on(levels, "devices/d-42/telemetry", &json!({})),
        Some(json!({"one": "devices"})),
        "topic(n) is 1-based; 0 and past the end are Undefined"
    );
    let rule = Rule::parse("SELECT clientid() AS c FROM '#'").expect("rule");
    let over_http = rule.apply(&Message {
        topic: "a/b",
        payload: b"{}",
        client_id: None,
        timestamp_ms: NOW,
    });
    assert_eq!(over_http, Some(json!({"c": "n/a"})));
}

#[test]
fn presence_events_select_their_fields() {
    // life-cycle-events.html: the connected event.
    let event = json!({
        "clientId": "186b5", "timestamp": 1573002230757_i64, "eventType": "connected",
        "sessionIdentifier": "a4666d2a7d844ae4ac5d7b38c9cb7967", "principalIdentifier": "12345678901234567890123456789012",
        "ipAddress": "192.0.2.0", "versionNumber": 0
    });
    let sql = "SELECT clientId AS deviceId, eventType, versionNumber, timestamp FROM '$aws/events/presence/+/+'";
    assert_eq!(
        run_on(sql, "$aws/events/presence/connected/186b5", &event),
        Some(
            json!({"deviceId": "186b5", "eventType": "connected", "versionNumber": 0, "timestamp": 1573002230757_i64})
        )
    );
}

#[test]
fn non_json_payloads_are_their_text() {
    let rule = Rule::parse("SELECT * FROM 'raw/+'").expect("rule");
    let out = rule.apply(&Message {
        topic: "raw/x",
        payload: b"80",
        client_id: Some("c"),
        timestamp_ms: NOW,
    });
    assert_eq!(out, Some(json!(80)), "80 is JSON");
    let out = rule.apply(&Message {
        topic: "raw/x",
        payload: b"not json",
        client_id: Some("c"),
        timestamp_ms: NOW,
    });
    assert_eq!(out, Some(json!("not json")));
}

#[test]
fn bad_sql_says_where() {
    for (sql, position) in [
        ("SELECT * FROM topic", 14),
        ("SELECT * FROM 'a/#/b'", 14),
        ("SELECT * FROM 'a' WHERE", 23),
        ("SELECT color AS FROM 'a'", 16),
        ("SELECT 'open FROM 'a'", 20),
        ("SELECT a ~ b FROM 'a'", 9),
    ] {
        let error = Rule::parse(sql).expect_err(sql);
        assert_eq!(error.position, position, "{sql}: {error}");
    }
    assert!(
        Rule::parse("select * from 'a/b' where x = 1").is_ok(),
        "keywords in any case"
    );
}

proptest::proptest! {
    #[test]
    fn any_text_parses_or_fails_cleanly(sql in "(SELECT|FROM|WHERE|AS|[a-z]{1,5}|'[a-z/+#]{0,6}'|[-+*/%=<>(),.{}\\[\\]: ]|[0-9]{1,3}){0,20}") {
        let _ = Rule::parse(&sql);
    }

    #[test]
    fn any_payload_evaluates_without_panicking(payload in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
        let rule = Rule::parse("SELECT *, get(a, 0) AS x, a.b + 1 AS y, (SELECT VALUE n FROM e) AS z FROM 'p/+' WHERE isUndefined(q) OR q > 1")
            .expect("rule");
        let _ = rule.apply(&Message { topic: "p/1", payload: &payload, client_id: None, timestamp_ms: NOW });
    }
}
