//! Tokens are secrets: a token that was only ever in `--token-auth-file` must not be
//! found anywhere in the process's memory, after the first load or after a reload.
//!
//! The test reads the running binary's memory through `/proc/<pid>/mem` (a parent may
//! read its child's) and searches it for the tokens. The reloader compares file versions
//! by digest and wipes what it read once it is parsed; the CSV parser sizes its fields
//! once and wipes them. What is not covered: the last partial block (under 64 bytes) of
//! each token that the HMAC copies into its own buffer on a stack that is later reused,
//! which is why the tokens here are as long as real service-account tokens.

use scrape_guard_testkit::{free_port, Process};

use std::{
    io::{Read, Seek, SeekFrom},
    net::TcpStream,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// A token shaped like a service-account JWT (~900 characters), and the part of it
/// that is unique to this run: what a memory search looks for.
fn token(label: &str) -> (String, String) {
    let mut random = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .unwrap()
        .read_exact(&mut random)
        .unwrap();
    let hex: String = random.iter().map(|b| format!("{b:02x}")).collect();
    let unique = format!("{label}-{hex}");
    (
        format!("eyJhbGciOiJSUzI1NiJ9.{unique}.{}", "Q".repeat(860)),
        unique,
    )
}

/// Every readable mapping of `pid`, concatenated per mapping.
fn memory(pid: u32) -> Vec<Vec<u8>> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mut mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut regions = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (Some(range), Some(perms)) = (fields.next(), fields.next()) else {
            continue;
        };
        if !perms.starts_with('r') || line.ends_with("[vvar]") || line.ends_with("[vsyscall]") {
            continue;
        }
        let Some((start, end)) = range.split_once('-') else {
            continue;
        };
        let start = u64::from_str_radix(start, 16).unwrap();
        let end = u64::from_str_radix(end, 16).unwrap();
        let mut buffer = vec![0; usize::try_from(end - start).unwrap()];
        if mem.seek(SeekFrom::Start(start)).is_ok() && mem.read_exact(&mut buffer).is_ok() {
            regions.push(buffer);
        }
    }
    regions
}

fn contains(memory: &[Vec<u8>], needle: &str) -> bool {
    let needle = needle.as_bytes();
    memory
        .iter()
        .any(|region| region.windows(needle.len()).any(|w| w == needle))
}

fn wait_listening(port: u16, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(child.try_wait().unwrap().is_none(), "scrape-guard exited");
        assert!(
            Instant::now() < deadline,
            "scrape-guard did not listen within 20 s"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn tokens_from_the_token_file_are_not_kept_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens.csv");
    let (first, first_unique) = token("first");
    // After a comment line, as real files have: the allocator's own bookkeeping
    // overwrites the first bytes of a freed buffer, which would hide a token there.
    let file = |token: &str, user: &str| format!("# scrapers\n{token},{user},1,\"scrapers\"\n");
    std::fs::write(&tokens, file(&first, "alice")).unwrap();
    let port = free_port();
    let child = Command::new(env!("CARGO_BIN_EXE_scrape-guard"))
        .args([
            format!("--secure-listen-address=127.0.0.1:{port}"),
            "--upstream=http://127.0.0.1:9/".into(),
            format!("--token-auth-file={}", tokens.display()),
        ])
        .env("SCRAPE_GUARD_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Process::kill_on_drop(child);
    wait_listening(port, &mut child);
    let pid = child.id();
    assert!(
        !contains(&memory(pid), &first_unique),
        "the token from the first load is in the process's memory"
    );

    // A reload: the new version is read, compared, parsed and swapped in.
    let (second, second_unique) = token("second");
    std::fs::write(&tokens, file(&second, "bob")).unwrap();
    // The reloader sees the change at once (inotify) or within 5 s (poll).
    std::thread::sleep(Duration::from_secs(7));
    let memory = memory(pid);
    assert!(
        !contains(&memory, &second_unique),
        "the token from the reloaded file is in the process's memory"
    );
    assert!(
        !contains(&memory, &first_unique),
        "the token from the first load is in the process's memory after a reload"
    );
    // The search itself works: something we know is there is found.
    assert!(
        contains(&memory, "scrape-guard"),
        "memory search finds nothing"
    );
}
