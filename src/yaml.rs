//! YAML read the way kube-rbac-proxy reads its `--config-file`, for that file and for
//! `--listeners-file`, whose listeners each carry such a file's `authorization:` block.
//!
//! kube-rbac-proxy parses the file with ghodss/yaml: go-yaml v2 (YAML 1.1) turns it into
//! JSON, and Go's `encoding/json` fills the structs. Files written for it rely on what
//! that allows, so the same rules apply here:
//! - a key matches a field by name, exactly or else case-insensitively (`APIGroup`,
//!   `apigroup`); a key no field has is ignored — here with a warning naming the key,
//!   its line and, when one is close, the field that was probably meant;
//! - a number or boolean where a string belongs becomes Go's spelling of it (`1.50` is
//!   "1.5", `yes` is "true"); YAML 1.1 applies (`on`/`off`/`yes`/`no` are booleans,
//!   `0123` is octal);
//! - `null` leaves a string or boolean as it was and empties an object or a list;
//! - only the first YAML document is read;
//! - keys that fold to the same field are applied in byte order (Go's JSON encoder sorts
//!   a map's keys), objects merging and anything else replaced.
//!
//! What Go refuses (a list where a string belongs, `resourceRequest: "true"`, a mapping
//! key that is `null`) is an error with the line, as kube-rbac-proxy fails to start on
//! it too. Timestamps are the one YAML 1.1 type not reproduced: go-yaml would turn
//! `2024-01-02` into "2024-01-02T00:00:00Z", here it stays as written.
//!
//! Keys of our own (`--listeners-file` outside the `authorization:` blocks) have no
//! kube-rbac-proxy to be compatible with: `Decoder::strict_fields` matches them the same
//! way but refuses an unknown or repeated key, with its line.

mod node;

use serde_saphyr::Spanned;

/// A YAML node as go-yaml v2 resolves it.
#[derive(Debug)]
pub(crate) enum Node {
    Null,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(String),
    Seq(Vec<Spanned<Node>>),
    Map(Vec<(Spanned<Node>, Spanned<Node>)>),
}

/// One node, with where it is.
pub(crate) type Value<'n> = &'n Spanned<Node>;

/// Something worth telling about the file that does not stop it from loading.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Note {
    pub(crate) line: u64,
    pub(crate) level: Level,
    pub(crate) text: String,
}

/// How loudly a [`Note`] is logged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Level {
    /// Probably not what the author meant.
    Warn,
    /// Works, but differently from upstream kube-rbac-proxy.
    Info,
}

/// The documents of `text`, YAML 1.1 scalars resolved as go-yaml v2 does.
pub(crate) fn parse(text: &str) -> Result<Vec<Spanned<Node>>, String> {
    let options = serde_saphyr::options! {
        legacy_octal_numbers: true,
        with_snippet: false,
    };
    serde_saphyr::from_multiple_with_options(text, options).map_err(|e| e.to_string())
}

/// Walks a node tree against the fields of kube-rbac-proxy's structs, collecting notes.
#[derive(Debug, Default)]
pub(crate) struct Decoder {
    pub(crate) notes: Vec<Note>,
}

impl Decoder {
    pub(crate) fn warn(&mut self, line: u64, text: impl Into<String>) {
        self.notes.push(Note {
            line,
            level: Level::Warn,
            text: text.into(),
        });
    }

    pub(crate) fn info(&mut self, line: u64, text: impl Into<String>) {
        self.notes.push(Note {
            line,
            level: Level::Info,
            text: text.into(),
        });
    }

    /// The entries of `maps` (decoded one after the other into one struct, as Go does
    /// for repeated or case-folded keys) sorted onto `fields`: for each field, the values
    /// to apply, in Go's order. Unknown keys are warned about and dropped.
    pub(crate) fn fields<'n>(
        &mut self,
        maps: &[Value<'n>],
        at: &str,
        fields: &[&str],
    ) -> Result<Vec<Vec<Value<'n>>>, String> {
        let mut out = vec![Vec::new(); fields.len()];
        for map in maps {
            let Node::Map(entries) = &map.value else {
                continue;
            };
            let mut keyed: Vec<Vec<(String, Value<'n>)>> = vec![Vec::new(); fields.len()];
            for (key, value) in entries {
                let Key { name, line, field } = Key::of(key, at, fields)?;
                let Ok(i) = field else {
                    let hint = field.err().unwrap_or_default();
                    self.warn(
                        line,
                        format!(
                            "unknown key {} is ignored (kube-rbac-proxy ignores it too){hint}",
                            join(at, &name)
                        ),
                    );
                    continue;
                };
                if let Some(earlier) = keyed[i].iter().position(|(k, _)| *k == name) {
                    // go-yaml keeps the last of two identical keys.
                    self.warn(
                        line,
                        format!("{} is given twice; the last one counts", join(at, &name)),
                    );
                    keyed[i].remove(earlier);
                }
                keyed[i].push((name, value));
            }
            for (i, mut values) in keyed.into_iter().enumerate() {
                if values.len() > 1 {
                    values.sort_by(|a, b| a.0.cmp(&b.0));
                    let spellings: Vec<&str> = values.iter().map(|(k, _)| k.as_str()).collect();
                    let line = values[values.len() - 1].1.referenced.line();
                    self.warn(
                        line,
                        format!(
                            "{} is given as {}; applied in that order, as kube-rbac-proxy does",
                            join(at, fields[i]),
                            spellings.join(" and ")
                        ),
                    );
                }
                out[i].extend(values.into_iter().map(|(_, v)| v));
            }
        }
        Ok(out)
    }

    /// `fields` for keys of our own: matched the same way, but an unknown key or one given
    /// twice (in any spelling) is an error naming it and its line. Each field gets at
    /// most one value.
    pub(crate) fn strict_fields<'n>(
        &mut self,
        map: Value<'n>,
        at: &str,
        fields: &[&str],
    ) -> Result<Vec<Vec<Value<'n>>>, String> {
        let mut out: Vec<Vec<Value<'n>>> = vec![Vec::new(); fields.len()];
        let mut lines = vec![0; fields.len()];
        let Node::Map(entries) = &map.value else {
            return Ok(out);
        };
        for (key, value) in entries {
            let Key { name, line, field } = Key::of(key, at, fields)?;
            let Ok(i) = field else {
                let hint = field.err().unwrap_or_default();
                return Err(format!(
                    "line {line}: unknown key {}{hint}",
                    join(at, &name)
                ));
            };
            if !out[i].is_empty() {
                return Err(format!(
                    "line {line}: {} is given twice (first on line {})",
                    join(at, fields[i]),
                    lines[i]
                ));
            }
            lines[i] = line;
            out[i].push(value);
        }
        Ok(out)
    }

    /// An object field: the mappings to merge, or `None` if it ends up unset (absent, or
    /// `null` after the last mapping).
    pub(crate) fn objects<'n>(
        &mut self,
        values: &[Value<'n>],
        at: &str,
    ) -> Result<Option<Vec<Value<'n>>>, String> {
        let mut maps = Vec::new();
        let mut set = false;
        for value in values {
            match &value.value {
                Node::Null => {
                    maps.clear();
                    set = false;
                }
                Node::Map(_) => {
                    maps.push(*value);
                    set = true;
                }
                other => return Err(mismatch(value, at, "a mapping", other)),
            }
        }
        Ok(set.then_some(maps))
    }

    /// A list field: its elements, or `None` if it ends up unset.
    pub(crate) fn list<'n>(
        &mut self,
        values: &[Value<'n>],
        at: &str,
    ) -> Result<Option<&'n [Spanned<Node>]>, String> {
        let mut list = None;
        for value in values {
            match &value.value {
                Node::Null => list = None,
                Node::Seq(items) => list = Some(items.as_slice()),
                other => return Err(mismatch(value, at, "a list", other)),
            }
        }
        Ok(list)
    }

    /// A string field: its final value and line, or `None` if never set.
    pub(crate) fn string(
        &mut self,
        values: &[Value<'_>],
        at: &str,
    ) -> Result<Option<(String, u64)>, String> {
        let mut found = None;
        for value in values {
            if let Some(text) = self.scalar_text(value, at)? {
                found = Some((text, value.referenced.line()));
            }
        }
        Ok(found)
    }

    /// A list of strings (`user.groups`).
    pub(crate) fn strings(
        &mut self,
        values: &[Value<'_>],
        at: &str,
    ) -> Result<Vec<String>, String> {
        let Some(items) = self.list(values, at)? else {
            return Ok(Vec::new());
        };
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            let text = self.scalar_text(item, &format!("{at}[{i}]"))?;
            out.push(text.unwrap_or_default());
        }
        Ok(out)
    }

    /// A boolean field. Go refuses anything but a boolean or `null` here.
    pub(crate) fn boolean(&mut self, values: &[Value<'_>], at: &str) -> Result<bool, String> {
        let mut found = false;
        for value in values {
            match &value.value {
                Node::Null => {}
                Node::Bool(b) => found = *b,
                other => return Err(mismatch(value, at, "true or false", other)),
            }
        }
        Ok(found)
    }

    /// A scalar where Go wants a string: its text (Go's spelling of a number or boolean,
    /// with a note), or `None` for `null`, which leaves the field as it was.
    fn scalar_text(&mut self, value: Value<'_>, at: &str) -> Result<Option<String>, String> {
        let line = value.referenced.line();
        let converted = match &value.value {
            Node::Null => return Ok(None),
            Node::Str(s) => return Ok(Some(s.clone())),
            Node::Bool(b) => ("boolean", b.to_string()),
            Node::Int(i) => ("number", i.to_string()),
            Node::Float(f) => ("number", go_float(*f)),
            other => return Err(mismatch(value, at, "a string", other)),
        };
        let (kind, text) = converted;
        self.warn(
            line,
            format!(
                "{at} is the {kind} {text:?} in YAML (unquoted) and is read as that string, as \
                 kube-rbac-proxy does; quote the value if you meant it as written"
            ),
        );
        Ok(Some(text))
    }
}

/// The per-field value lists of `Decoder::fields`, as a fixed-size array to destructure.
pub(crate) fn take<const N: usize>(fields: Vec<Vec<Value<'_>>>) -> [Vec<Value<'_>>; N] {
    let mut fields = fields.into_iter();
    std::array::from_fn(|_| fields.next().unwrap_or_default())
}

/// A mapping key and the field it names.
struct Key {
    name: String,
    line: u64,
    /// The field's index, matched exactly or else as Go folds case; else the
    /// "; did you mean …?" to add to the message (maybe empty).
    field: Result<usize, String>,
}

impl Key {
    fn of(key: Value<'_>, at: &str, fields: &[&str]) -> Result<Self, String> {
        let name = key_text(key, at)?;
        let exact = fields.iter().position(|f| *f == name);
        let field = exact
            .or_else(|| fields.iter().position(|f| fold(f) == fold(&name)))
            .ok_or_else(|| did_you_mean(&name, fields));
        Ok(Self {
            name,
            line: key.referenced.line(),
            field,
        })
    }
}

/// A mapping key as ghodss/yaml turns it into a JSON key.
fn key_text(key: Value<'_>, at: &str) -> Result<String, String> {
    match &key.value {
        Node::Str(s) => Ok(s.clone()),
        Node::Int(i) => Ok(i.to_string()),
        Node::Float(f) => Ok(go_float(*f)),
        Node::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "line {}: {}: a key that is {} cannot be read (kube-rbac-proxy refuses it too)",
            key.referenced.line(),
            if at.is_empty() { "top level" } else { at },
            kind(other)
        )),
    }
}

fn mismatch(value: Value<'_>, at: &str, want: &str, got: &Node) -> String {
    format!(
        "line {}: {at} must be {want}, not {} (kube-rbac-proxy refuses it too)",
        value.referenced.line(),
        kind(got)
    )
}

fn kind(node: &Node) -> String {
    match node {
        Node::Null => "null".into(),
        Node::Bool(b) => format!("the boolean {b}"),
        Node::Int(i) => format!("the number {i}"),
        Node::Float(f) => format!("the number {}", go_float(*f)),
        Node::Str(s) => format!("the string {s:?}"),
        Node::Seq(_) => "a list".into(),
        Node::Map(_) => "a mapping".into(),
    }
}

pub(crate) fn join(at: &str, name: &str) -> String {
    if at.is_empty() {
        name.to_owned()
    } else {
        format!("{at}.{name}")
    }
}

/// Go's `encoding/json` key folding: each character lower- then upper-cased.
fn fold(s: &str) -> String {
    s.chars()
        .map(|c| {
            let lower = single(c.to_lowercase()).unwrap_or(c);
            single(lower.to_uppercase()).unwrap_or(lower)
        })
        .collect()
}

/// The one character a case mapping gives, if it gives one (Go's simple mappings).
fn single(mut mapped: impl Iterator<Item = char>) -> Option<char> {
    let first = mapped.next()?;
    mapped.next().is_none().then_some(first)
}

/// "; did you mean F?" for the field F of `fields` that `key` probably meant, or "":
/// the hint every unknown-key warning of ours ends with (`--rbac-file`'s too).
pub(crate) fn did_you_mean(key: &str, fields: &[&str]) -> String {
    suggestion(key, fields)
        .map(|f| format!("; did you mean {f}?"))
        .unwrap_or_default()
}

/// The field a misspelt or over-qualified key probably meant: a typo (`statik`,
/// `resourceAttribute`) or a longer name ending in a field's (`resourceName` → `name`).
fn suggestion<'f>(key: &str, fields: &[&'f str]) -> Option<&'f str> {
    let key = fold(key);
    fields
        .iter()
        .copied()
        .find(|f| edit_distance(&key, &fold(f)) <= 2)
        .or_else(|| {
            fields
                .iter()
                .copied()
                .filter(|f| f.len() >= 4 && key.ends_with(&fold(f)))
                .max_by_key(|f| f.len())
        })
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(row[j + 1] + 1);
        }
    }
    row[b.len()]
}

/// Go's `strconv.FormatFloat(f, 'g', -1, 32)`, what ghodss/yaml writes for a YAML float
/// that lands in a string: the shortest float32 digits, exponent form below 1e-4 and
/// from 1e6 on.
fn go_float(value: f64) -> String {
    // Narrowing is the point: ghodss/yaml formats at 32-bit precision.
    let value = value as f32;
    if !value.is_finite() {
        return value.to_string();
    }
    if value == 0.0 {
        return if value.is_sign_negative() { "-0" } else { "0" }.into();
    }
    let formatted = format!("{value:e}");
    let (mantissa, exponent) = formatted.split_once('e').unwrap_or((&formatted, "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let (sign, mantissa) = match mantissa.strip_prefix('-') {
        Some(m) => ("-", m),
        None => ("", mantissa),
    };
    let digits: String = mantissa.chars().filter(|c| *c != '.').collect();
    if !(-4..6).contains(&exponent) {
        let (first, rest) = digits.split_at(1);
        let fraction = if rest.is_empty() {
            String::new()
        } else {
            format!(".{rest}")
        };
        let exp_sign = if exponent < 0 { '-' } else { '+' };
        return format!("{sign}{first}{fraction}e{exp_sign}{:02}", exponent.abs());
    }
    let point = exponent + 1;
    let len = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if point <= 0 {
        let zeros = "0".repeat(usize::try_from(-point).unwrap_or(0));
        format!("{sign}0.{zeros}{digits}")
    } else if point >= len {
        let zeros = "0".repeat(usize::try_from(point - len).unwrap_or(0));
        format!("{sign}{digits}{zeros}")
    } else {
        let (whole, fraction) = digits.split_at(usize::try_from(point).unwrap_or(0));
        format!("{sign}{whole}.{fraction}")
    }
}

#[cfg(test)]
mod tests;
