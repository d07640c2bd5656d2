//! The firewall log reader against the kernel, as root: it reads NFLOG inside its namespace,
//! ends quietly when the namespace goes or is replaced, and a new reader serves a re-created one.
//! Traffic stays on the loopback of a namespace this test makes.

use std::net::UdpSocket;
use std::time::{Duration, Instant};

use apiwall_kernel::{LOG_GROUP, Netns};
use apiwall_lab::fwlog::{log_paths, spawn_reader};

fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// A namespace whose output hook logs UDP to port 9 (and 10) to the firewall's group.
fn netns(name: &str, dir: &std::path::Path) -> Netns {
    let ns = Netns::create(name).expect("ip netns add");
    let rules = format!(
        "table inet t {{\n\tchain out {{\n\t\ttype filter hook output priority filter; policy accept;\n\
         \t\tudp dport 9 log group {LOG_GROUP} prefix \"Allow c/r\"\n\
         \t\tudp dport 10 log group {LOG_GROUP} prefix \"Deny\"\n\t}}\n}}\n"
    );
    let file = dir.join("t.nft");
    std::fs::write(&file, rules).unwrap();
    ns.exec("nft", &["-f", file.to_str().unwrap()])
        .expect("nft");
    ns
}

fn send(ns: &Netns, port: u16) {
    ns.run(|| {
        let s = UdpSocket::bind("127.0.0.1:0").unwrap();
        s.send_to(b"x", ("127.0.0.1", port)).unwrap();
    })
    .unwrap();
}

fn wait(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(Instant::now() < deadline, "{what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn reader_logs_in_its_namespace_and_follows_it() {
    if !is_root() {
        eprintln!("skipped: needs root");
        return;
    }
    let home = tempfile::tempdir().unwrap();
    let name = format!("awfwlog-{}", std::process::id());
    let (log, jsonl) = log_paths(home.path(), "fw");
    let read = || std::fs::read_to_string(&log).unwrap_or_default();

    let ns = netns(&name, home.path());
    let reader = spawn_reader(home.path(), "fw", &name).unwrap();
    // The reader binds shortly after it starts: send until a line shows.
    wait("no allow line", || {
        send(&ns, 9);
        read().lines().any(|l| {
            l.starts_with("UDP request from 127.0.0.1:")
                && l.ends_with(" to 127.0.0.1:9. Action: Allow. Rule Collection: c. Rule: r")
        })
    });
    send(&ns, 10);
    wait("no default-deny line", || {
        read().contains(
            "to 127.0.0.1:10. Action: Deny. No rule matched. Proceeding with default action",
        )
    });
    for l in std::fs::read_to_string(&jsonl).unwrap().lines() {
        let v: serde_json::Value = serde_json::from_str(l).unwrap();
        assert_eq!(v["protocol"], "UDP", "{l}");
    }

    // Replaced by a namespace of the same name: the old reader ends; a new one serves it.
    drop(ns);
    let ns = netns(&name, home.path());
    wait("the reader outlived its namespace", || reader.is_finished());
    reader.join().unwrap();
    let before = read().lines().count();
    let reader = spawn_reader(home.path(), "fw", &name).unwrap();
    wait("no line from the re-created namespace", || {
        send(&ns, 9);
        read().lines().count() > before
    });

    // Gone: the reader ends quietly.
    drop(ns);
    wait("the reader outlived its namespace", || reader.is_finished());
    reader.join().unwrap();
}
