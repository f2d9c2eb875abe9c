//! `ferry bench load`: many clients sending at once over several groups through one node on
//! loopback, with the node killed (SIGKILL) and restarted in the middle. Afterwards every
//! client must hold every message of its group exactly once, having received them in the
//! node's order. Reports messages/s and delivery latency.
//!
//! The node runs as a child process (`ferry node` of this same binary, on a SQLite file) so it
//! can be killed for real; the clients are real SDK clients with their own stores and workers.
//!
//! With `--replicas N --db postgres://…` the same load then runs a second time through N node
//! replicas on that PostgreSQL database, behind a loopback TCP balancer (what a deployment
//! puts in front of them): one replica is SIGKILLed midway and stays dead, its clients
//! reconnect through the balancer to a live one and resume from their cursors. Both runs are
//! reported, side by side.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ferry_sdk::blocking::Client;
use ferry_sdk::store::MessageKind;
use ferry_sdk::{AccountKey, ClientOptions, GroupOptions, MessageQuery};
use serde::Serialize;

use super::balancer::Balancer;
use crate::output::anyhow_like::Result;
use crate::output::print_json;

pub struct LoadOptions {
    pub clients: usize,
    pub groups: usize,
    pub messages: u64,
    pub kill_node: bool,
    pub keep: Option<PathBuf>,
    /// Also run through this many replicas on this PostgreSQL database.
    pub replicas: Option<(usize, String)>,
}

/// The nodes one run goes through.
enum Topology {
    /// One node on a SQLite file, restarted after its kill.
    Sqlite,
    /// Replicas on one PostgreSQL database behind a balancer; one killed, not restarted.
    Postgres { url: String, replicas: usize },
}

/// The running nodes of one run.
struct Nodes {
    children: Vec<Child>,
    /// Where the clients connect: the node, or the balancer.
    url: String,
    _balancer: Option<Balancer>,
}

impl Nodes {
    fn start(topology: &Topology, root: &Path) -> Result<Nodes> {
        match topology {
            Topology::Sqlite => {
                let db = root.join("node.db");
                let (child, addr) = spawn_node(&db.to_string_lossy(), "127.0.0.1:0")?;
                Ok(Nodes {
                    children: vec![child],
                    url: format!("http://{addr}"),
                    _balancer: None,
                })
            }
            Topology::Postgres { url, replicas } => {
                let mut children = Vec::new();
                let mut addrs = Vec::new();
                for _ in 0..(*replicas).max(1) {
                    let (child, addr) = spawn_node(url, "127.0.0.1:0")?;
                    children.push(child);
                    addrs.push(addr);
                }
                let balancer = Balancer::start(addrs)?;
                Ok(Nodes {
                    children,
                    url: format!("http://{}", balancer.addr()),
                    _balancer: Some(balancer),
                })
            }
        }
    }

    /// SIGKILLs the (first) node; a single SQLite node comes back on the same file and
    /// address, a replica stays dead (the others serve its clients).
    fn kill_one(&mut self, topology: &Topology, root: &Path) -> Result<()> {
        let node = &mut self.children[0];
        node.kill()?; // SIGKILL
        node.wait()?;
        if let Topology::Sqlite = topology {
            std::thread::sleep(Duration::from_millis(300));
            let addr = self.url.trim_start_matches("http://").to_string();
            *node = spawn_node(&root.join("node.db").to_string_lossy(), &addr)?.0;
        }
        Ok(())
    }
}

impl Drop for Nodes {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

#[derive(Serialize)]
struct LoadReport {
    /// `sqlite` (one node) or `postgres` (replicas behind a balancer).
    backend: &'static str,
    /// Node processes serving at the start.
    replicas: usize,
    clients: usize,
    groups: usize,
    messages_per_client: u64,
    messages_sent: u64,
    /// Sends that failed at first (node down) and went out later from the outbox.
    sends_retried: u64,
    /// SIGKILLs of a node midway (a SQLite node restarts; a replica stays dead).
    node_restarts: u32,
    seconds: f64,
    /// Messages sent per second over the whole run (all senders).
    sent_per_second: f64,
    /// Messages applied per second, summed over all receiving installations.
    delivered_per_second: f64,
    /// From a message's send to a member's worker applying it (messages caught in the node's
    /// restart included).
    latency_ms_p50: f64,
    latency_ms_p99: f64,
    latency_ms_max: f64,
    /// Every client holds every message of its group once, no more.
    exactly_once: bool,
    /// Every client received the others' messages in the node's order.
    in_node_order: bool,
    missing: u64,
    duplicated: u64,
    release_build: bool,
}

/// `ferry node` of this binary as a child, on `db` (a file or a URL), at `listen`.
fn spawn_node(db: &str, listen: &str) -> Result<(Child, String)> {
    let mut child = Command::new(std::env::current_exe()?)
        .args(["node", "--listen", listen, "--db", db])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    let mut first = String::new();
    BufReader::new(child.stdout.take().ok_or("no stdout")?).read_line(&mut first)?;
    let addr = first
        .trim()
        .strip_prefix("listening on ")
        .ok_or_else(|| format!("the node said {first:?}"))?
        .to_string();
    Ok((child, addr))
}

/// One message another member sent, as a client's stream reported it.
struct Arrival {
    id: Vec<u8>,
    sent_at_ns: i64,
    applied_at_ns: i64,
}

struct Received {
    /// Per client: others' messages in the order its stream reported them.
    log: Vec<Mutex<Vec<Arrival>>>,
}

pub fn run(o: LoadOptions, json: bool) -> Result<()> {
    let tmp = tempfile::Builder::new()
        .prefix("ferry-bench-load-")
        .tempdir()?;
    let root = o.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let Some((replicas, url)) = o.replicas.clone() else {
        std::fs::create_dir_all(&root)?;
        let report = measure(&o, &root, &Topology::Sqlite)?;
        if json {
            print_json(&report)?;
        } else {
            print_report(&report);
        }
        return check(&report);
    };
    // Both, in one run: the single SQLite node first, then the replicas.
    let sqlite_root = root.join("sqlite");
    let postgres_root = root.join("postgres");
    std::fs::create_dir_all(&sqlite_root)?;
    std::fs::create_dir_all(&postgres_root)?;
    let single = measure(&o, &sqlite_root, &Topology::Sqlite)?;
    if !json {
        print_report(&single);
    }
    let scaled = measure(&o, &postgres_root, &Topology::Postgres { url, replicas })?;
    if json {
        print_json(&serde_json::json!({
            "single_sqlite_node": single,
            "postgres_replicas": scaled,
        }))?;
    } else {
        print_report(&scaled);
        println!(
            "replicas on PostgreSQL vs one SQLite node: {:.2}x delivered/s, p99 {:.1} vs {:.1} ms",
            scaled.delivered_per_second / single.delivered_per_second.max(f64::MIN_POSITIVE),
            scaled.latency_ms_p99,
            single.latency_ms_p99
        );
    }
    check(&single)?;
    check(&scaled)
}

/// One run of the load through `topology`, with everything under `root`.
fn measure(o: &LoadOptions, root: &Path, topology: &Topology) -> Result<LoadReport> {
    let mut nodes = Nodes::start(topology, root)?;
    let url = nodes.url.clone();
    let groups = o.groups.clamp(1, o.clients.max(1));
    let clients: Vec<Client> = (0..o.clients.max(2))
        .map(|i| {
            let mut opts =
                ClientOptions::new(root.join(format!("c{i}")), url.clone(), AccountKey::New);
            opts.send_check_interval = Duration::from_secs(3600);
            opts.sync_check_interval = Duration::from_secs(3600);
            Ok(Client::create(opts)?.client)
        })
        .collect::<Result<_>>()?;
    let n = clients.len();
    // Client i is in group i % groups; the first member creates it.
    let mut group_ids = Vec::new();
    for g in 0..groups {
        let members: Vec<usize> = (0..n).filter(|i| i % groups == g).collect();
        let others: Vec<String> = members[1..]
            .iter()
            .map(|&i| clients[i].inbox_id().to_string())
            .collect();
        group_ids.push(
            clients[members[0]]
                .create_group(&others, GroupOptions::default())?
                .id()
                .to_vec(),
        );
    }
    for c in &clients {
        c.sync_all()?;
    }

    // Each client's worker applies what the node pushes; its stream tells when.
    let received = Arc::new(Received {
        log: (0..n).map(|_| Mutex::new(Vec::new())).collect(),
    });
    let mut listeners = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let rx = c.stream_messages();
        let me = c.inbox_id().to_string();
        let received = received.clone();
        listeners.push(std::thread::spawn(move || {
            for m in rx {
                if m.kind == MessageKind::Application && m.sender_inbox_id != me {
                    received.log[i].lock().expect("log").push(Arrival {
                        id: m.id,
                        sent_at_ns: m.sent_at_ns,
                        applied_at_ns: ferry_sdk::now_ns(),
                    });
                }
            }
        }));
    }
    let workers: Vec<_> = clients.iter().map(Client::start_worker).collect();

    let sent = Arc::new(AtomicU64::new(0));
    let retried = Arc::new(AtomicU64::new(0));
    let total = n as u64 * o.messages;
    let t = Instant::now();
    let senders: Vec<_> = clients
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let g = c.conversation(&group_ids[i % groups]);
            let (sent, retried, messages) = (sent.clone(), retried.clone(), o.messages);
            std::thread::spawn(move || -> std::result::Result<(), String> {
                let g = g.map_err(|e| e.to_string())?;
                for j in 0..messages {
                    // A failed publish keeps the message in the outbox: the next send or sync
                    // sends it. Never sent twice by hand.
                    if g.send(&format!("c{i} m{j}")).is_err() {
                        retried.fetch_add(1, Ordering::Relaxed);
                        std::thread::sleep(Duration::from_millis(20));
                    }
                    sent.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    let mut restarts = 0;
    if o.kill_node {
        while sent.load(Ordering::Relaxed) < total / 2 {
            std::thread::sleep(Duration::from_millis(5));
        }
        nodes.kill_one(topology, root)?;
        restarts += 1;
    }
    for s in senders {
        s.join().map_err(|_| "a sender panicked")??;
    }
    // Everyone catches up: outboxes drain, workers apply the rest.
    let expected_per_group: HashMap<usize, u64> = (0..groups)
        .map(|g| {
            (
                g,
                (0..n).filter(|i| i % groups == g).count() as u64 * o.messages,
            )
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let mut done = true;
        for (i, c) in clients.iter().enumerate() {
            c.sync_all()?;
            let have = app_texts(c, &group_ids[i % groups])?.len() as u64;
            if have < expected_per_group[&(i % groups)] {
                done = false;
            }
        }
        if done || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let seconds = t.elapsed().as_secs_f64();
    for w in workers {
        w.stop();
    }

    // Exactly once: every member of a group holds the same messages, each text once, all of
    // them; and they are all on the node.
    let (mut missing, mut duplicated) = (0u64, 0u64);
    for (i, c) in clients.iter().enumerate() {
        let g = i % groups;
        let texts = app_texts(c, &group_ids[g])?;
        let distinct: HashSet<&String> = texts.iter().map(|(_, t)| t).collect();
        duplicated += (texts.len() - distinct.len()) as u64;
        missing += expected_per_group[&g].saturating_sub(distinct.len() as u64);
    }
    // In the node's order: the members of a group applied its messages in one and the same
    // order, the only one they share being the node's (message ids hash the plaintext, so the
    // node's ciphertexts cannot be matched to them here). Every pair of members must order
    // every pair of messages both received alike.
    let mut in_node_order = true;
    for g in 0..groups {
        let members: Vec<usize> = (0..n).filter(|i| i % groups == g).collect();
        let positions: Vec<HashMap<Vec<u8>, usize>> = members
            .iter()
            .map(|&i| {
                let log = received.log[i].lock().expect("log");
                log.iter()
                    .enumerate()
                    .map(|(k, a)| (a.id.clone(), k))
                    .collect()
            })
            .collect();
        for (x, px) in positions.iter().enumerate() {
            for py in positions.iter().skip(x + 1) {
                let mut common: Vec<(usize, usize)> = px
                    .iter()
                    .filter_map(|(id, &a)| py.get(id).map(|&b| (a, b)))
                    .collect();
                common.sort_unstable();
                if common.windows(2).any(|w| w[0].1 >= w[1].1) {
                    in_node_order = false;
                }
            }
        }
    }
    let mut latencies: Vec<f64> = received
        .log
        .iter()
        .flat_map(|l| {
            l.lock()
                .expect("log")
                .iter()
                .map(|a| (a.applied_at_ns - a.sent_at_ns) as f64 / 1e6)
                .collect::<Vec<_>>()
        })
        .collect();
    latencies.sort_by(f64::total_cmp);
    let pct = |p: f64| {
        latencies
            .get(((latencies.len() as f64 * p) as usize).min(latencies.len().saturating_sub(1)))
            .copied()
            .unwrap_or(0.0)
    };
    let delivered: u64 = (0..groups)
        .map(|g| {
            let members = (0..n).filter(|i| i % groups == g).count() as u64;
            members * (members - 1) * o.messages
        })
        .sum();
    let report = LoadReport {
        backend: match topology {
            Topology::Sqlite => "sqlite",
            Topology::Postgres { .. } => "postgres",
        },
        replicas: match topology {
            Topology::Sqlite => 1,
            Topology::Postgres { replicas, .. } => (*replicas).max(1),
        },
        clients: n,
        groups,
        messages_per_client: o.messages,
        messages_sent: total,
        sends_retried: retried.load(Ordering::Relaxed),
        node_restarts: restarts,
        seconds,
        sent_per_second: total as f64 / seconds,
        delivered_per_second: delivered as f64 / seconds,
        latency_ms_p50: pct(0.50),
        latency_ms_p99: pct(0.99),
        latency_ms_max: latencies.last().copied().unwrap_or(0.0),
        exactly_once: missing == 0 && duplicated == 0,
        in_node_order,
        missing,
        duplicated,
        release_build: !cfg!(debug_assertions),
    };
    // The listeners end with the clients.
    drop((clients, listeners));
    drop(nodes);
    Ok(report)
}

fn print_report(report: &LoadReport) {
    println!(
        "{} clients in {} groups, {} messages each, {} ({} node{}, {} killed midway): {:.0} sent/s, \
         {:.0} delivered/s; latency p50 {:.1} ms, p99 {:.1} ms, max {:.0} ms; exactly once: {}, \
         in node order: {}{}",
        report.clients,
        report.groups,
        report.messages_per_client,
        report.backend,
        report.replicas,
        if report.replicas == 1 { "" } else { "s" },
        report.node_restarts,
        report.sent_per_second,
        report.delivered_per_second,
        report.latency_ms_p50,
        report.latency_ms_p99,
        report.latency_ms_max,
        report.exactly_once,
        report.in_node_order,
        if report.release_build { "" } else { " (debug build: use --release)" }
    );
}

fn check(report: &LoadReport) -> Result<()> {
    if !report.exactly_once || !report.in_node_order {
        return Err(format!(
            "delivery broke ({}): {} missing, {} duplicated, in node order: {}",
            report.backend, report.missing, report.duplicated, report.in_node_order
        )
        .into());
    }
    Ok(())
}

/// (id, text) of a group's application messages at one client.
fn app_texts(c: &Client, group: &[u8]) -> Result<Vec<(Vec<u8>, String)>> {
    Ok(c.conversation(group)?
        .messages(&MessageQuery::default())?
        .into_iter()
        .filter(|m| m.kind == MessageKind::Application)
        .map(|m| {
            let t = m.text().unwrap_or_default();
            (m.id, t)
        })
        .collect::<BTreeMap<_, _>>()
        .into_iter()
        .collect())
}
