//! The world a scenario runs in: a real node (SQLite file, restartable on its port) and a real
//! history server behind a fault proxy on loopback, inboxes with installations whose node
//! connections inject faults, and what the simulation saw happen (for the invariants).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ferry_history_server::{HistoryConfig, RunningHistoryServer};
use ferry_node::{NodeConfig, RunningNode};
use ferry_sdk::archive::{ArchiveOptions, Control};
use ferry_sdk::blocking::{Client, Group};
use ferry_sdk::store::{
    ConsentEntity, ConsentState, ConversationFilter, ConversationKind, Membership, MessageKind,
};
use ferry_sdk::{AccountKey, ArchiveKey, ClientOptions, GroupOptions, KeyPair, MessageQuery};
use ferry_transport::GrpcTransport;
use zeroize::Zeroizing;

use crate::faults::{Counters, FaultyTransport, HistoryProxy};
use crate::scenario::{Op, INBOXES};

type Id = Vec<u8>;

pub struct Inst {
    pub name: String,
    pub inbox: usize,
    home: PathBuf,
    pub client: Option<Client>,
    transport: Arc<FaultyTransport>,
    pub installation_id: [u8; 32],
    pub revoked_at_ns: Option<i64>,
    /// Conversations restored from an archive.
    pub restored: BTreeSet<Id>,
    /// Its last view of each conversation: epoch and member installations.
    views: BTreeMap<Id, (u64, BTreeSet<[u8; 32]>)>,
}

struct Inbox {
    key: Zeroizing<[u8; 32]>,
    id: String,
}

/// An application message the simulation sent and the node confirmed.
pub struct Sent {
    pub conversation: Id,
    pub id: Id,
    pub text: String,
    pub at_ns: i64,
    /// The sending installation.
    pub by: [u8; 32],
}

pub struct World {
    pub dir: tempfile::TempDir,
    node: Option<RunningNode>,
    node_addr: std::net::SocketAddr,
    history: Option<RunningHistoryServer>,
    history_addr: std::net::SocketAddr,
    proxy: HistoryProxy,
    pub counters: Arc<Counters>,
    inboxes: Vec<Inbox>,
    pub insts: Vec<Inst>,
    /// Every conversation the simulation created.
    pub conversations: Vec<Id>,
    pub sent: Vec<Sent>,
    /// When each installation last became a member of each conversation (in some
    /// installation's up-to-date view): the start of the operation after which it showed.
    member_since: HashMap<(Id, [u8; 32]), i64>,
    pub log: String,
    texts: u64,
}

fn now_ns() -> i64 {
    ferry_sdk::now_ns()
}

impl World {
    pub fn new(counters: Arc<Counters>) -> World {
        let dir = tempfile::tempdir().unwrap();
        let node = RunningNode::start(NodeConfig {
            listen: "127.0.0.1:0".into(),
            db: ferry_node::Database::Sqlite(dir.path().join("node.db")),
            ..Default::default()
        })
        .unwrap();
        let history = RunningHistoryServer::start(HistoryConfig {
            listen: "127.0.0.1:0".into(),
            dir: dir.path().join("history"),
            ..Default::default()
        })
        .unwrap();
        let proxy = HistoryProxy::start(history.addr(), counters.clone());
        let mut w = World {
            node_addr: node.addr(),
            node: Some(node),
            history_addr: history.addr(),
            history: Some(history),
            proxy,
            counters,
            inboxes: Vec::new(),
            insts: Vec::new(),
            conversations: Vec::new(),
            sent: Vec::new(),
            member_since: HashMap::new(),
            log: String::new(),
            texts: 0,
            dir,
        };
        for _ in 0..INBOXES {
            w.new_installation(None, true);
        }
        w
    }

    fn node_url(&self) -> String {
        format!("http://{}", self.node_addr)
    }

    /// A new installation: of a new inbox (`None`) or of an existing one.
    fn new_installation(&mut self, inbox: Option<usize>, history: bool) -> Option<usize> {
        let name = format!("i{}", self.insts.len());
        let home = self.dir.path().join(&name);
        let account = match inbox {
            None => AccountKey::New,
            Some(i) => AccountKey::Existing(self.inboxes[i].key.clone()),
        };
        let mut o = ClientOptions::new(&home, self.node_url(), account);
        o.send_check_interval = Duration::from_secs(3600);
        o.sync_check_interval = Duration::from_secs(3600);
        if history {
            o.history_sync_url = format!("http://{}", self.proxy.addr);
        }
        // Registration itself runs without faults; the installation then opens over its
        // faulty connection.
        let reg = match Client::create(o) {
            Ok(r) => r,
            Err(e) => {
                let _ = writeln!(self.log, "  new installation failed: {e}");
                return None;
            }
        };
        let inbox = match inbox {
            Some(i) => i,
            None => {
                self.inboxes.push(Inbox {
                    key: reg.account_key.clone().unwrap(),
                    id: reg.client.inbox_id().to_string(),
                });
                self.inboxes.len() - 1
            }
        };
        let installation_id = *reg.client.installation_id().as_bytes();
        reg.client.close();
        drop(reg);
        let transport = Arc::new(FaultyTransport::new(
            Arc::new({
                let url = self.node_url();
                ferry_sdk::blocking::block_on(async move { GrpcTransport::connect(&url) }).unwrap()
            }),
            self.counters.clone(),
        ));
        let client = Client::open_with(&home, transport.clone()).unwrap();
        self.insts.push(Inst {
            name,
            inbox,
            home,
            client: Some(client),
            transport,
            installation_id,
            revoked_at_ns: None,
            restored: BTreeSet::new(),
            views: BTreeMap::new(),
        });
        Some(self.insts.len() - 1)
    }

    /// Whether an inbox has its three installations (revoked ones do not count).
    fn full(&self, inbox: usize) -> bool {
        self.insts
            .iter()
            .filter(|i| i.inbox == inbox && i.revoked_at_ns.is_none())
            .count()
            >= 3
    }

    /// Online installations that are not revoked, in order.
    fn live(&self) -> Vec<usize> {
        (0..self.insts.len())
            .filter(|&i| self.insts[i].client.is_some() && self.insts[i].revoked_at_ns.is_none())
            .collect()
    }

    fn pick(&self, n: u8) -> Option<usize> {
        let live = self.live();
        (!live.is_empty()).then(|| live[n as usize % live.len()])
    }

    /// The active conversations (not the sync group) of an installation, by id.
    fn active_conversations(&self, i: usize) -> Vec<Id> {
        let c = self.insts[i].client.as_ref().unwrap();
        let mut ids: Vec<Id> = c
            .list_conversations(&ConversationFilter {
                active: Some(true),
                ..Default::default()
            })
            .unwrap_or_default()
            .into_iter()
            .filter(|c| c.kind != ConversationKind::Sync)
            .map(|c| c.id)
            .collect();
        ids.sort();
        ids
    }

    fn group_of(&self, i: usize, conv: u8) -> Option<Group> {
        let ids = self.active_conversations(i);
        if ids.is_empty() {
            return None;
        }
        let id = &ids[conv as usize % ids.len()];
        self.insts[i].client.as_ref()?.conversation(id).ok()
    }

    /// The installation `by` picks and the conversation of its own that `conv` picks.
    fn acting(&self, by: u8, conv: u8) -> Option<(usize, Group)> {
        let i = self.pick(by)?;
        Some((i, self.group_of(i, conv)?))
    }

    fn inbox_id(&self, n: u8) -> String {
        self.inboxes[n as usize % self.inboxes.len()].id.clone()
    }

    fn text(&mut self, who: usize) -> String {
        self.texts += 1;
        format!("m{} from {}", self.texts, self.insts[who].name)
    }

    /// Runs one operation; what it did goes to the log. Errors are part of the game (a fault,
    /// a removed member); panics are not.
    pub fn apply(&mut self, step: usize, op: &Op) {
        let started = now_ns();
        let _ = write!(self.log, "{step:3}: {op:?}");
        let outcome = self.run(op);
        match outcome {
            Ok(what) => {
                let _ = writeln!(self.log, "{what}");
            }
            Err(e) => {
                let _ = writeln!(self.log, " -> error: {e}");
            }
        }
        self.observe(started);
        if std::env::var("FERRY_SIM_TRACE").is_ok() {
            let v = self.views();
            self.log.push_str(&v);
        }
    }

    fn run(&mut self, op: &Op) -> Result<String, String> {
        let s = |e: ferry_sdk::Error| e.to_string();
        match op {
            Op::CreateGroup { by, with } => {
                let Some(i) = self.pick(*by) else {
                    return Ok(String::new());
                };
                let own = self.inboxes[self.insts[i].inbox].id.clone();
                let mut members: Vec<String> = with.iter().map(|n| self.inbox_id(*n)).collect();
                members.retain(|m| *m != own);
                members.sort();
                members.dedup();
                let c = self.insts[i].client.as_ref().unwrap();
                let g = c
                    .create_group(&members, GroupOptions::default())
                    .map_err(s)?;
                self.conversations.push(g.id().to_vec());
                Ok(format!(
                    " -> {} created {}",
                    self.insts[i].name,
                    short(g.id())
                ))
            }
            Op::CreateDm { by, peer } => {
                let Some(i) = self.pick(*by) else {
                    return Ok(String::new());
                };
                let peer = self.inbox_id(*peer);
                if peer == self.inboxes[self.insts[i].inbox].id {
                    return Ok(" -> (self)".into());
                }
                let c = self.insts[i].client.as_ref().unwrap();
                let g = c.find_or_create_dm(&peer).map_err(s)?;
                if !self.conversations.iter().any(|c| c == g.id()) {
                    self.conversations.push(g.id().to_vec());
                }
                Ok(format!(" -> {} dm {}", self.insts[i].name, short(g.id())))
            }
            Op::Add { by, conv, inbox } | Op::Remove { by, conv, inbox } => {
                let Some((i, g)) = self.acting(*by, *conv) else {
                    return Ok(String::new());
                };
                if g.info().map_err(s)?.kind != ConversationKind::Group {
                    return Ok(" -> (a dm)".into());
                }
                let who = self.inbox_id(*inbox);
                if matches!(op, Op::Add { .. }) {
                    g.add_members(&[who]).map_err(s)?;
                } else {
                    if who == self.inboxes[self.insts[i].inbox].id {
                        return Ok(" -> (self)".into());
                    }
                    g.remove_members(&[who]).map_err(s)?;
                }
                Ok(format!(" -> {} in {}", self.insts[i].name, short(g.id())))
            }
            Op::Send { by, conv } => {
                let Some((i, g)) = self.acting(*by, *conv) else {
                    return Ok(String::new());
                };
                let text = self.text(i);
                let at_ns = now_ns();
                let id = g.send(&text).map_err(s)?;
                self.sent.push(Sent {
                    conversation: stored_in(&g, &id),
                    id,
                    text: text.clone(),
                    at_ns,
                    by: self.insts[i].installation_id,
                });
                Ok(format!(
                    " -> {} sent {text:?} in {}",
                    self.insts[i].name,
                    short(g.id())
                ))
            }
            Op::Rename { by, conv } => {
                let Some((i, g)) = self.acting(*by, *conv) else {
                    return Ok(String::new());
                };
                if g.info().map_err(s)?.kind != ConversationKind::Group {
                    return Ok(" -> (a dm)".into());
                }
                let name = self.text(i);
                g.update_name(&name).map_err(s)?;
                Ok(format!(
                    " -> {} named {}",
                    self.insts[i].name,
                    short(g.id())
                ))
            }
            Op::Consent { by, conv, deny } => {
                let Some((i, g)) = self.acting(*by, *conv) else {
                    return Ok(String::new());
                };
                let state = if *deny {
                    ConsentState::Denied
                } else {
                    ConsentState::Allowed
                };
                self.insts[i]
                    .client
                    .as_ref()
                    .unwrap()
                    .set_consent(ConsentEntity::Conversation, &hex::encode(g.id()), state)
                    .map_err(s)?;
                Ok(format!(
                    " -> {} {state:?} {}",
                    self.insts[i].name,
                    short(g.id())
                ))
            }
            Op::Offline { inst } => {
                let Some(i) = self.pick(*inst) else {
                    return Ok(String::new());
                };
                // Keep one installation online, or the scenario has nobody left to act.
                if self.live().len() <= 1 {
                    return Ok(" -> (last one online)".into());
                }
                self.offline(i);
                Ok(format!(" -> {} offline", self.insts[i].name))
            }
            Op::Online { inst } => {
                let off: Vec<usize> = (0..self.insts.len())
                    .filter(|&i| self.insts[i].client.is_none())
                    .collect();
                if off.is_empty() {
                    return Ok(String::new());
                }
                let i = off[*inst as usize % off.len()];
                self.online(i);
                Ok(format!(" -> {} online", self.insts[i].name))
            }
            Op::NewInstallation { inbox, history } => {
                let inbox = *inbox as usize % self.inboxes.len();
                if self.full(inbox) {
                    return Ok(" -> (enough installations)".into());
                }
                match self.new_installation(Some(inbox), *history) {
                    Some(i) => Ok(format!(" -> {}", self.insts[i].name)),
                    None => Err("registration failed".into()),
                }
            }
            Op::BackupRestore { from } => {
                let Some(i) = self.pick(*from) else {
                    return Ok(String::new());
                };
                if self.full(self.insts[i].inbox) {
                    return Ok(" -> (enough installations)".into());
                }
                let key = ArchiveKey::generate();
                let path = self.dir.path().join(format!("backup-{}", self.insts.len()));
                self.insts[i]
                    .client
                    .as_ref()
                    .unwrap()
                    .create_archive(&path, &key, &ArchiveOptions::default(), &Control::new())
                    .map_err(s)?;
                let inbox = self.insts[i].inbox;
                let Some(n) = self.new_installation(Some(inbox), true) else {
                    return Err("registration failed".into());
                };
                let c = self.insts[n].client.as_ref().unwrap();
                c.import_archive(&path, &key, &Control::new()).map_err(s)?;
                let restored: BTreeSet<Id> = c
                    .list_conversations(&ConversationFilter::default())
                    .map_err(s)?
                    .into_iter()
                    .filter(|c| c.membership == Membership::Restored)
                    .map(|c| c.id)
                    .collect();
                let k = restored.len();
                self.insts[n].restored = restored;
                Ok(format!(
                    " -> {} restored onto {} ({k} conversations)",
                    self.insts[i].name, self.insts[n].name
                ))
            }
            Op::Revoke { by, victim } => {
                let Some(i) = self.pick(*by) else {
                    return Ok(String::new());
                };
                let inbox = self.insts[i].inbox;
                let others: Vec<usize> = (0..self.insts.len())
                    .filter(|&v| {
                        v != i
                            && self.insts[v].inbox == inbox
                            && self.insts[v].revoked_at_ns.is_none()
                    })
                    .collect();
                if others.is_empty() {
                    return Ok(" -> (no other installation)".into());
                }
                let v = others[*victim as usize % others.len()];
                let signer = Arc::new(KeyPair::from_seed(&self.inboxes[inbox].key));
                let c = self.insts[i].client.as_ref().unwrap();
                let at_ns = now_ns();
                if let Err(e) = c.revoke_installation(signer, &self.insts[v].installation_id) {
                    // A lost answer may hide a revocation the node stored: the log says.
                    let inbox_id = self.inboxes[inbox].id.clone();
                    let revoked = c.inbox_info(&inbox_id).is_ok_and(|info| {
                        info.revoked
                            .iter()
                            .any(|r| r.as_bytes() == &self.insts[v].installation_id)
                    });
                    if revoked {
                        self.insts[v].revoked_at_ns = Some(at_ns);
                    }
                    return Err(format!("{e} (revoked on the node: {revoked})"));
                }
                self.insts[v].revoked_at_ns = Some(at_ns);
                Ok(format!(
                    " -> {} revoked {}",
                    self.insts[i].name, self.insts[v].name
                ))
            }
            Op::RestartNode => {
                self.node.take().unwrap().stop();
                self.node = Some(start_node(self.node_addr, self.dir.path().join("node.db")));
                Ok(String::new())
            }
            Op::RestartHistory => {
                self.history.take().unwrap().stop();
                self.history = Some(start_history(
                    self.history_addr,
                    self.dir.path().join("history"),
                ));
                Ok(String::new())
            }
            Op::SyncAll { inst } => {
                let Some(i) = self.pick(*inst) else {
                    return Ok(String::new());
                };
                let r = self.insts[i]
                    .client
                    .as_ref()
                    .unwrap()
                    .sync_all()
                    .map_err(s)?;
                Ok(format!(
                    " -> {} joined {} applied {} added {} imported {}",
                    self.insts[i].name,
                    r.conversations_joined,
                    r.messages_processed,
                    r.installations_added_to,
                    r.history_imported
                ))
            }
            Op::Worker { inst } => {
                let Some(i) = self.pick(*inst) else {
                    return Ok(String::new());
                };
                let w = self.insts[i].client.as_ref().unwrap().start_worker();
                std::thread::sleep(Duration::from_millis(60));
                w.stop();
                Ok(format!(" -> {}", self.insts[i].name))
            }
            Op::Nothing => Ok(String::new()),
            Op::Fault { inst, fault } => {
                let Some(i) = self.pick(*inst) else {
                    return Ok(String::new());
                };
                self.insts[i].transport.arm(*fault);
                Ok(format!(" -> {}", self.insts[i].name))
            }
            Op::HistoryFault(f) => {
                self.proxy.arm(*f);
                Ok(String::new())
            }
        }
    }

    fn offline(&mut self, i: usize) {
        if let Some(c) = self.insts[i].client.take() {
            c.close();
        }
    }

    fn online(&mut self, i: usize) {
        if self.insts[i].client.is_none() {
            let c =
                Client::open_with(&self.insts[i].home, self.insts[i].transport.clone()).unwrap();
            self.insts[i].client = Some(c);
        }
    }

    /// Records each online installation's view of its conversations, and who became a
    /// member: an installation that shows in the newest view of a conversation (the highest
    /// epoch anyone holds) after showing in none is a member since `started`.
    fn observe(&mut self, started: i64) {
        for inst in self.insts.iter_mut() {
            let Some(c) = inst.client.as_ref() else {
                continue;
            };
            let Ok(convs) = c.list_conversations(&ConversationFilter {
                include_sync: false,
                ..Default::default()
            }) else {
                continue;
            };
            for conv in convs {
                let Ok(g) = c.conversation(&conv.id) else {
                    continue;
                };
                if !conv.is_active() {
                    // A removed or restored installation's view says nothing of the group.
                    inst.views.remove(&conv.id);
                    continue;
                }
                let (Ok(epoch), Ok(members)) = (g.epoch(), g.members()) else {
                    continue;
                };
                let set = members
                    .iter()
                    .flat_map(|m| m.installation_ids.iter().map(|i| *i.as_bytes()))
                    .collect();
                inst.views.insert(conv.id.clone(), (epoch, set));
            }
        }
        for conv in self.conversations.clone() {
            let newest = self.newest_view(&conv);
            for inst in &self.insts {
                let key = (conv.clone(), inst.installation_id);
                match (&newest, self.member_since.contains_key(&key)) {
                    (Some(v), false) if v.contains(&inst.installation_id) => {
                        self.member_since.insert(key, started);
                    }
                    (Some(v), true) if !v.contains(&inst.installation_id) => {
                        self.member_since.remove(&key);
                    }
                    _ => {}
                }
            }
        }
    }

    /// The member installations of a conversation in the newest view any (not revoked)
    /// installation holds, online or not.
    fn newest_view(&self, conv: &Id) -> Option<BTreeSet<[u8; 32]>> {
        self.insts
            .iter()
            .filter(|i| i.revoked_at_ns.is_none())
            .filter_map(|i| i.views.get(conv))
            .max_by_key(|(epoch, _)| *epoch)
            .map(|(_, set)| set.clone())
    }

    /// Brings everyone online, clears faults, and syncs every installation (member checks
    /// every time) until a whole round changes nothing. Revoked installations keep syncing
    /// too, as a stolen phone would.
    pub fn quiesce(&mut self) -> Result<usize, String> {
        self.proxy.disarm();
        for i in 0..self.insts.len() {
            self.online(i);
            let inst = &self.insts[i];
            ferry_sdk::blocking::block_on(inst.transport.settle());
            let c = inst.client.as_ref().unwrap();
            c.set_check_intervals(Duration::ZERO, Duration::ZERO)
                .map_err(|e| e.to_string())?;
        }
        let mut last = String::new();
        for round in 0..15 {
            let started = now_ns();
            let mut errors = Vec::new();
            for i in 0..self.insts.len() {
                let inst = &self.insts[i];
                let c = inst.client.as_ref().unwrap();
                match c.sync_all() {
                    Ok(r) => {
                        if r.conversations_joined
                            + r.messages_processed
                            + r.installations_added_to
                            + r.history_imported
                            > 0
                        {
                            let _ = writeln!(
                                self.log,
                                "  settle {round} {}: joined {} applied {} added {} imported {}",
                                inst.name,
                                r.conversations_joined,
                                r.messages_processed,
                                r.installations_added_to,
                                r.history_imported
                            );
                        }
                    }
                    Err(e) => {
                        let _ = writeln!(self.log, "  settle {round} {}: {e}", inst.name);
                        if inst.revoked_at_ns.is_none() {
                            errors.push(format!("{}: {e}", inst.name));
                        }
                    }
                }
            }
            self.observe(started);
            if std::env::var("FERRY_SIM_TRACE").is_ok() {
                let v = self.views();
                self.log.push_str(&v);
            }
            let now = self.fingerprint();
            if errors.is_empty() && now == last && round >= 2 {
                return Ok(round);
            }
            last = now;
        }
        Err("no quiescence after 15 rounds of sync".into())
    }

    /// Each installation's view of each conversation, for the report.
    pub fn views(&self) -> String {
        let name = |id: &[u8; 32]| {
            self.insts
                .iter()
                .find(|i| &i.installation_id == id)
                .map(|i| i.name.clone())
                .unwrap_or_else(|| short(id))
        };
        let mut out = String::new();
        for conv in &self.conversations {
            let _ = writeln!(out, "  {}:", short(conv));
            for inst in &self.insts {
                let state = inst
                    .client
                    .as_ref()
                    .and_then(|c| c.conversation(conv).ok())
                    .and_then(|g| g.info().ok())
                    .map(|c| format!("{:?}", c.membership))
                    .unwrap_or_else(|| "-".into());
                let view = inst
                    .views
                    .get(conv)
                    .map(|(e, m)| {
                        format!(
                            "epoch {e}: {}",
                            m.iter().map(name).collect::<Vec<_>>().join(" ")
                        )
                    })
                    .unwrap_or_default();
                let _ = writeln!(out, "    {} {state} {view}", inst.name);
            }
        }
        out
    }

    /// What every live installation holds: conversations, activity, messages, members.
    fn fingerprint(&self) -> String {
        let mut out = String::new();
        for inst in &self.insts {
            let Some(c) = inst.client.as_ref() else {
                continue;
            };
            let _ = write!(out, "{}:", inst.name);
            for conv in c
                .list_conversations(&ConversationFilter::default())
                .unwrap_or_default()
            {
                let n = c
                    .conversation(&conv.id)
                    .and_then(|g| g.messages(&MessageQuery::default()))
                    .map(|m| m.len())
                    .unwrap_or(0);
                let _ = write!(out, "{}/{:?}/{n};", short(&conv.id), conv.membership);
            }
            for (conv, (epoch, members)) in &inst.views {
                let _ = write!(out, "{}@{epoch}x{};", short(conv), members.len());
            }
            let consent = c.preferences().consent_list().map(|l| l.len()).unwrap_or(0);
            let _ = writeln!(out, "consent {consent}");
        }
        out
    }

    /// Sends one probe in every conversation (from its first live member) so the invariants
    /// also cover messages sent after everything settled.
    pub fn probe(&mut self) {
        for conv in self.conversations.clone() {
            let sender = self.live().into_iter().find(|&i| {
                self.insts[i]
                    .client
                    .as_ref()
                    .unwrap()
                    .conversation(&conv)
                    .and_then(|g| g.is_active())
                    .unwrap_or(false)
            });
            if let Some(i) = sender {
                let text = format!("probe {} from {}", short(&conv), self.insts[i].name);
                let at_ns = now_ns();
                let g = self.insts[i]
                    .client
                    .as_ref()
                    .unwrap()
                    .conversation(&conv)
                    .unwrap();
                match g.send(&text) {
                    Ok(id) => self.sent.push(Sent {
                        conversation: stored_in(&g, &id),
                        id,
                        text,
                        at_ns,
                        by: self.insts[i].installation_id,
                    }),
                    Err(e) => {
                        let _ = writeln!(self.log, "  probe in {} failed: {e}", short(&conv));
                    }
                }
            }
        }
    }

    /// Checks the invariants; returns what broke, where.
    pub fn check(&self) -> (Vec<String>, u64) {
        let mut broken = Vec::new();
        let mut checks = 0u64;
        // Each live installation's application messages per conversation.
        let mut held: HashMap<(usize, Id), Vec<ferry_sdk::store::Message>> = HashMap::new();
        for (i, inst) in self.insts.iter().enumerate() {
            let c = inst.client.as_ref().unwrap();
            for conv in &self.conversations {
                let Ok(g) = c.conversation(conv) else {
                    continue;
                };
                let msgs: Vec<_> = g
                    .messages(&MessageQuery::default())
                    .unwrap_or_default()
                    .into_iter()
                    .filter(|m| m.kind == MessageKind::Application && &m.conversation_id == conv)
                    .collect();
                held.insert((i, conv.clone()), msgs);
            }
        }
        let active = |i: usize, conv: &Id| -> bool {
            let inst = &self.insts[i];
            inst.revoked_at_ns.is_none()
                && inst
                    .client
                    .as_ref()
                    .unwrap()
                    .conversation(conv)
                    .and_then(|g| g.is_active())
                    .unwrap_or(false)
        };
        // A message its sender could not repair: the sender was revoked, and in its last
        // view of the group `receiver` was not a member yet. It encrypted the message in an
        // epoch before the commit that added `receiver` (which the node ordered first); the
        // repair is the sender re-sending it in the new epoch, and the node refuses a revoked
        // installation. (docs/reliability.md, "Convergence under chaos", says so.)
        let unrepairable = |sender: &[u8], receiver: usize, conv: &Id| -> bool {
            self.insts.iter().any(|s| {
                s.installation_id.as_slice() == sender
                    && s.revoked_at_ns.is_some()
                    && s.views.get(conv).is_some_and(|(_, members)| {
                        !members.contains(&self.insts[receiver].installation_id)
                    })
            })
        };
        for conv in &self.conversations {
            let Some(members) = self.newest_view(conv) else {
                continue;
            };
            // 2. No message twice in one store (by id, or by text under another id).
            for (i, inst) in self.insts.iter().enumerate() {
                let Some(msgs) = held.get(&(i, conv.clone())) else {
                    continue;
                };
                checks += 1;
                let mut texts = BTreeSet::new();
                let mut ids = BTreeSet::new();
                for m in msgs {
                    if !ids.insert(m.id.clone()) {
                        broken.push(format!(
                            "2: {} holds message {} twice in {}",
                            inst.name,
                            short(&m.id),
                            short(conv)
                        ));
                    }
                    if let Some(t) = m.text() {
                        if !texts.insert(t.clone()) {
                            broken.push(format!(
                                "2: {} shows {t:?} twice (two ids) in {}",
                                inst.name,
                                short(conv)
                            ));
                        }
                    }
                }
            }
            let members_here: Vec<usize> = (0..self.insts.len())
                .filter(|&i| members.contains(&self.insts[i].installation_id) && active(i, conv))
                .collect();
            // 1. Every message any member holds that was sent since another member joined
            //    is held by that member too (and in the same order).
            for &x in &members_here {
                let since = self
                    .member_since
                    .get(&(conv.clone(), self.insts[x].installation_id))
                    .copied()
                    .unwrap_or(i64::MAX);
                let mine: BTreeSet<&Id> = held[&(x, conv.clone())].iter().map(|m| &m.id).collect();
                for &y in &members_here {
                    checks += 1;
                    for m in &held[&(y, conv.clone())] {
                        if m.sent_at_ns >= since
                            && !mine.contains(&m.id)
                            && !unrepairable(&m.sender_installation_id, x, conv)
                        {
                            broken.push(format!(
                                "1: {} lacks {:?} ({}), held by {}, in {}",
                                self.insts[x].name,
                                m.text().unwrap_or_default(),
                                short(&m.id),
                                self.insts[y].name,
                                short(conv)
                            ));
                        }
                    }
                }
                let order = |i: usize| -> Vec<Id> {
                    held[&(i, conv.clone())]
                        .iter()
                        .filter(|m| m.sent_at_ns >= since)
                        .map(|m| m.id.clone())
                        .collect()
                };
                if let Some(&first) = members_here.first() {
                    let (a, b) = (order(first), order(x));
                    let common: Vec<&Id> = a.iter().filter(|id| b.contains(id)).collect();
                    let common_b: Vec<&Id> = b.iter().filter(|id| a.contains(id)).collect();
                    if common != common_b {
                        broken.push(format!(
                            "1: {} and {} order messages differently in {}",
                            self.insts[first].name,
                            self.insts[x].name,
                            short(conv)
                        ));
                    }
                }
            }
            // 3. Every confirmed send is at every member that was one when it was sent.
            for s in self.sent.iter().filter(|s| &s.conversation == conv) {
                for &x in &members_here {
                    checks += 1;
                    let since = self
                        .member_since
                        .get(&(conv.clone(), self.insts[x].installation_id))
                        .copied()
                        .unwrap_or(i64::MAX);
                    if s.at_ns >= since
                        && !held[&(x, conv.clone())].iter().any(|m| m.id == s.id)
                        && !unrepairable(&s.by, x, conv)
                    {
                        broken.push(format!(
                            "3: {} never got {:?} ({}) in {}",
                            self.insts[x].name,
                            s.text,
                            short(&s.id),
                            short(conv)
                        ));
                    }
                }
            }
            // 5. A restored conversation whose inbox is still in it is active again.
            for (i, inst) in self.insts.iter().enumerate() {
                if inst.revoked_at_ns.is_some() || !inst.restored.contains(conv) {
                    continue;
                }
                checks += 1;
                let inbox_in = self.insts.iter().any(|o| {
                    o.inbox == inst.inbox
                        && o.revoked_at_ns.is_none()
                        && members.contains(&o.installation_id)
                });
                let denied = inst
                    .client
                    .as_ref()
                    .unwrap()
                    .conversation(conv)
                    .and_then(|g| g.consent_state())
                    .map(|s| s == ConsentState::Denied)
                    .unwrap_or(false);
                if inbox_in && !denied && !active(i, conv) {
                    broken.push(format!(
                        "5: {} still holds {} restored and inactive though its inbox is a member",
                        inst.name,
                        short(conv)
                    ));
                }
            }
            // 6. A revoked installation is in no group and gets nothing sent after it was
            //    revoked and everything settled (the probes).
            for (i, inst) in self.insts.iter().enumerate() {
                if inst.revoked_at_ns.is_none() {
                    continue;
                }
                checks += 1;
                if members.contains(&inst.installation_id) {
                    broken.push(format!(
                        "6: revoked {} is still a member of {}",
                        inst.name,
                        short(conv)
                    ));
                }
                if let Some(msgs) = held.get(&(i, conv.clone())) {
                    for m in msgs {
                        if m.text().is_some_and(|t| t.starts_with("probe")) {
                            broken.push(format!(
                                "6: revoked {} received {:?}",
                                inst.name,
                                m.text().unwrap_or_default()
                            ));
                        }
                    }
                }
            }
        }
        // 4. Each inbox's live installations agree on consent and on the HMAC secret, and a
        //    revoked one does not hold their current keys (for any conversation both have).
        for (b, inbox) in self.inboxes.iter().enumerate() {
            let keys = |i: usize| self.insts[i].client.as_ref().unwrap().hmac_keys().ok();
            let live = (0..self.insts.len())
                .find(|&i| self.insts[i].inbox == b && self.insts[i].revoked_at_ns.is_none());
            for (i, inst) in self.insts.iter().enumerate() {
                let (Some(l), true) = (live, inst.inbox == b && inst.revoked_at_ns.is_some())
                else {
                    continue;
                };
                checks += 1;
                let (Some(mine), Some(theirs)) = (keys(i), keys(l)) else {
                    continue;
                };
                if let Some((conv, _)) = mine
                    .iter()
                    .find(|(c, k)| theirs.get(*c).is_some_and(|t| t == *k))
                {
                    broken.push(format!(
                        "4: revoked {} of inbox {} holds {}'s current HMAC keys (for {})",
                        inst.name,
                        short(inbox.id.as_bytes()),
                        self.insts[l].name,
                        &conv[..8.min(conv.len())]
                    ));
                }
            }
        }
        // 4. (continued) consent and HMAC keys of live installations.
        for (b, inbox) in self.inboxes.iter().enumerate() {
            let mine: Vec<usize> = (0..self.insts.len())
                .filter(|&i| self.insts[i].inbox == b && self.insts[i].revoked_at_ns.is_none())
                .collect();
            let consent = |i: usize| -> BTreeMap<String, ConsentState> {
                self.insts[i]
                    .client
                    .as_ref()
                    .unwrap()
                    .preferences()
                    .consent_list()
                    .unwrap_or_default()
                    .into_iter()
                    .map(|r| (format!("{:?}:{}", r.entity_type, r.entity), r.state))
                    .collect()
            };
            let hmac = |i: usize| self.insts[i].client.as_ref().unwrap().hmac_keys().ok();
            for w in mine.windows(2) {
                let (x, y) = (w[0], w[1]);
                checks += 2;
                if consent(x) != consent(y) {
                    broken.push(format!(
                        "4: {} and {} of inbox {} disagree on consent: {:?} vs {:?}",
                        self.insts[x].name,
                        self.insts[y].name,
                        short(inbox.id.as_bytes()),
                        consent(x),
                        consent(y)
                    ));
                }
                let (hx, hy) = (hmac(x), hmac(y));
                let same = match (&hx, &hy) {
                    (Some(a), Some(b)) => a
                        .iter()
                        .filter(|(k, _)| b.contains_key(*k))
                        .all(|(k, v)| b[k] == *v),
                    _ => false,
                };
                if !same {
                    broken.push(format!(
                        "4: {} and {} of inbox {} hold different HMAC keys",
                        self.insts[x].name,
                        self.insts[y].name,
                        short(inbox.id.as_bytes())
                    ));
                }
            }
        }
        (broken, checks)
    }

    pub fn shutdown(mut self) {
        for i in 0..self.insts.len() {
            self.offline(i);
        }
        if let Some(n) = self.node.take() {
            n.stop();
        }
        if let Some(h) = self.history.take() {
            h.stop();
        }
    }
}

fn start_node(addr: std::net::SocketAddr, db: PathBuf) -> RunningNode {
    // The port may take a moment to be free again.
    for _ in 0..50 {
        if let Ok(n) = RunningNode::start(NodeConfig {
            listen: addr.to_string(),
            db: ferry_node::Database::Sqlite(db.clone()),
            ..Default::default()
        }) {
            return n;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the node cannot listen on {addr} again");
}

fn start_history(addr: std::net::SocketAddr, dir: PathBuf) -> RunningHistoryServer {
    for _ in 0..50 {
        if let Ok(h) = RunningHistoryServer::start(HistoryConfig {
            listen: addr.to_string(),
            dir: dir.clone(),
            ..Default::default()
        }) {
            return h;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    panic!("the history server cannot listen on {addr} again");
}

/// The group a sent message went to: for a DM, the primary one of its groups.
fn stored_in(g: &Group, id: &[u8]) -> Id {
    g.messages(&MessageQuery::default())
        .unwrap_or_default()
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| m.conversation_id)
        .unwrap_or_else(|| g.id().to_vec())
}

pub fn short(id: &[u8]) -> String {
    let h = hex::encode(id);
    h[..8.min(h.len())].to_string()
}
