use super::*;

#[test]
fn go_folds_keys_like_this() {
    assert_eq!(fold("resourceAttributes"), fold("RESOURCEATTRIBUTES"));
    assert_eq!(fold("apiGroup"), fold("APIGroup"));
    // encoding/json folds U+017F (long s) to S and the Kelvin sign to K.
    assert_eq!(fold("\u{17f}tatic"), fold("static"));
    assert_eq!(fold("\u{212a}ind"), fold("kind"));
    assert_ne!(fold("static"), fold("statik"));
}

#[test]
fn go_spells_yaml_floats_like_this() {
    let table = [
        (1.5, "1.5"),
        (1.10, "1.1"),
        (100000.0, "100000"),
        (1e6, "1e+06"),
        (1234567.0, "1.234567e+06"),
        (0.0001, "0.0001"),
        (0.00001, "1e-05"),
        (-2.5, "-2.5"),
        (0.0, "0"),
    ];
    for (value, want) in table {
        assert_eq!(go_float(value), want, "{value}");
    }
}

#[test]
fn suggestions_for_unknown_keys() {
    let fields = ["namespace", "apiGroup", "resource", "name", "verb"];
    assert_eq!(suggestion("resourceName", &fields), Some("name"));
    assert_eq!(suggestion("namspace", &fields), Some("namespace"));
    assert_eq!(suggestion("apiGroups", &fields), Some("apiGroup"));
    assert_eq!(suggestion("labels", &fields), None);
    assert_eq!(
        suggestion("statik", &["static", "rewrites"]),
        Some("static")
    );
}

#[test]
fn strict_fields_fold_keys_and_refuse_unknown_or_repeated_ones() {
    let fields = ["name", "upstream", "clientCAFile"];
    let docs = parse("name: a\nClientCaFile: /ca\n").unwrap();
    let mut d = Decoder::default();
    let found = d.strict_fields(&docs[0], "listeners[0]", &fields).unwrap();
    assert_eq!(found.iter().map(Vec::len).collect::<Vec<_>>(), [1, 0, 1]);
    assert!(d.notes.is_empty());
    for (yaml, want) in [
        (
            "name: a\nupstreem: x\n",
            "line 2: unknown key listeners[0].upstreem; did you mean upstream?",
        ),
        (
            "name: a\nNAME: b\n",
            "line 2: listeners[0].name is given twice (first on line 1)",
        ),
    ] {
        let docs = parse(yaml).unwrap();
        let err = d
            .strict_fields(&docs[0], "listeners[0]", &fields)
            .unwrap_err();
        assert_eq!(err, want, "{yaml}");
    }
}

#[test]
fn yaml_1_1_scalars_as_go_yaml_resolves_them() {
    let docs = parse("a: yes\nb: 'yes'\nc: 0123\nd: ~\ne: 1.50\n").unwrap();
    let Node::Map(entries) = &docs[0].value else {
        panic!("not a map")
    };
    let values: Vec<String> = entries.iter().map(|(_, v)| kind(&v.value)).collect();
    assert_eq!(
        values,
        [
            "the boolean true",
            "the string \"yes\"",
            "the number 83",
            "null",
            "the number 1.5"
        ]
    );
    assert_eq!(entries[2].1.referenced.line(), 3);
}
