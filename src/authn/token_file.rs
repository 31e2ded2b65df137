//! `--token-auth-file`: kube-apiserver's static token file, for standalone mode.
//!
//! The format is the apiserver's: CSV lines `token,user,uid[,"group1,group2"]`.
//! Tokens are stored only as their HMAC (the same keyed hash the cache uses), so the
//! raw tokens do not stay in memory after the file is parsed. Like the apiserver, every
//! user from the file is also in `system:authenticated`.

use std::{collections::HashMap, path::PathBuf, sync::Arc};

use zeroize::Zeroizing;

use crate::{
    cache::{Key, TokenHasher},
    identity::User,
};

/// Users by token hash.
#[derive(Debug, Default)]
pub(crate) struct TokenFile {
    users: HashMap<Key, Arc<User>>,
}

impl TokenFile {
    /// Parses the file; errors name the file and line, never the token.
    pub(crate) fn parse(
        files: &[(PathBuf, Vec<u8>)],
        hasher: &TokenHasher,
    ) -> Result<Self, String> {
        let mut users = HashMap::new();
        for (path, bytes) in files {
            let origin = path.display();
            let text = std::str::from_utf8(bytes).map_err(|e| format!("{origin}: {e}"))?;
            for (number, line) in text.lines().enumerate() {
                let at = || format!("{origin}:{}", number + 1);
                let line = line.trim();
                if line.is_empty() || line.starts_with('#') {
                    continue;
                }
                let fields = split_csv(line).map_err(|e| format!("{}: {e}", at()))?;
                let [token, name, uid, rest @ ..] = fields.as_slice() else {
                    return Err(format!("{}: want token,user,uid[,\"groups\"]", at()));
                };
                if token.is_empty() || name.is_empty() {
                    return Err(format!("{}: empty token or user name", at()));
                }
                let mut groups: Vec<String> = rest
                    .first()
                    .map(|g| {
                        g.split(',')
                            .map(str::trim)
                            .filter(|g| !g.is_empty())
                            .map(str::to_owned)
                            .collect()
                    })
                    .unwrap_or_default();
                if !groups.iter().any(|g| g == "system:authenticated") {
                    groups.push("system:authenticated".into());
                }
                let user = User {
                    name: name.clone(),
                    uid: uid.clone(),
                    groups: groups.into(),
                    extra: Default::default(),
                };
                if users
                    .insert(hasher.key(token.as_bytes()), Arc::new(user))
                    .is_some()
                {
                    return Err(format!("{}: duplicate token", at()));
                }
            }
        }
        Ok(Self { users })
    }

    /// The user for a token's hash.
    pub(crate) fn lookup(&self, key: &Key) -> Option<Arc<User>> {
        self.users.get(key).cloned()
    }
}

/// One CSV record (RFC 4180 quoting; leading spaces trimmed, as Go's reader does).
///
/// The first field is a token, so every field is sized once (no reallocation leaves a
/// copy behind) and wiped when dropped.
fn split_csv(line: &str) -> Result<Zeroizing<Vec<String>>, String> {
    let mut fields = Zeroizing::new(Vec::with_capacity(4));
    let mut chars = line.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let mut field = Zeroizing::new(String::with_capacity(line.len()));
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("unterminated quoted field".into()),
                }
            }
            match chars.next() {
                None => {
                    fields.push(std::mem::take(&mut *field));
                    return Ok(fields);
                }
                Some(',') => {}
                Some(_) => return Err("text after a quoted field".into()),
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(std::mem::take(&mut *field));
                        return Ok(fields);
                    }
                    Some(',') => break,
                    Some('"') => return Err("bare quote in an unquoted field".into()),
                    Some(c) => field.push(c),
                }
            }
        }
        fields.push(std::mem::take(&mut *field));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_apiservers_format() {
        let hasher = TokenHasher::random().unwrap();
        let text = "# tokens\n\
                    t1,alice,1\n\
                    t2,system:serviceaccount:monitoring:prometheus,2,\"system:serviceaccounts,system:serviceaccounts:monitoring\"\n\
                    \n\
                    t3, bob , 3 ,ops\n";
        let file =
            TokenFile::parse(&[("tokens.csv".into(), text.as_bytes().to_vec())], &hasher).unwrap();
        let alice = file.lookup(&hasher.key(b"t1")).unwrap();
        assert_eq!(alice.name, "alice");
        assert_eq!(alice.uid, "1");
        assert_eq!(*alice.groups, ["system:authenticated"]);
        let sa = file.lookup(&hasher.key(b"t2")).unwrap();
        assert_eq!(
            *sa.groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:monitoring",
                "system:authenticated"
            ]
        );
        let bob = file.lookup(&hasher.key(b"t3")).unwrap();
        assert_eq!(bob.name, "bob ");
        assert_eq!(*bob.groups, ["ops", "system:authenticated"]);
        assert!(file.lookup(&hasher.key(b"t4")).is_none());
    }

    #[test]
    fn errors_name_the_line_but_not_the_token() {
        let hasher = TokenHasher::random().unwrap();
        for (text, needle) in [
            ("secret-1,alice\n", "tokens.csv:1"),
            ("ok,a,1\nsecret-2,\"bob,2\n", "tokens.csv:2: unterminated"),
            ("secret-3,a,1\nsecret-3,b,2\n", "tokens.csv:2: duplicate"),
        ] {
            let err = TokenFile::parse(&[("tokens.csv".into(), text.as_bytes().to_vec())], &hasher)
                .unwrap_err();
            assert!(err.contains(needle), "{err}");
            assert!(!err.contains("secret"), "token in error: {err}");
        }
    }

    #[test]
    fn csv_quoting() {
        assert_eq!(
            *split_csv(r#"a,"b,c","d""e",,"#).unwrap(),
            ["a", "b,c", "d\"e", "", ""]
        );
        assert!(split_csv(r#"a,b"c"#).is_err());
    }
}
