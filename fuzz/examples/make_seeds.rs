//! Writes the seed corpus of every fuzz target into `OUT/<target>/` (normally `fuzz/seeds`).
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example make_seeds -- OUT \
//!     [--ferry ARCHIVE]... [--xmtp ARCHIVE]...
//! ```
//!
//! `--ferry`: real Ferry archives sealed with `ferry_fuzz::ARCHIVE_KEY` (`scripts/fuzz seeds`
//! makes them with `ferry dev seed` and `ferry archive create` on a real store); they become
//! `archive_reader` seeds, and their elements `proto_decode` seeds. `--xmtp`: real libxmtp
//! archives sealed with 32 zero bytes (the shared vector); they become `xmtp_reader` seeds, and
//! their records `proto_decode` seeds. Everything else is made here: archives from the crate's
//! writer and from the spec encoder, typical protocol messages, and small deterministic byte
//! strings for the structured targets (libFuzzer finds their structure from there).

use std::path::PathBuf;

use ferry_archive::{
    proto as ap, ArchiveReader, ArchiveWriter, Argon2Params, Element, WriterOptions,
};
use ferry_fuzz::targets::proto_selector;
use ferry_fuzz::{archive_key, frame, gen, spec, xmtp, ARCHIVE_KEY, XMTP_KEY};
use ferry_identity::{Account, InboxState, KeyPair};
use ferry_proto::{message, node};
use ferry_xmtp_archive::{XmtpReader, XmtpRecord};
use prost::Message;

struct Out {
    root: PathBuf,
    count: usize,
    bytes: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, data: &[u8]) {
        let dir = self.root.join(target);
        std::fs::create_dir_all(&dir).expect("create seed dir");
        std::fs::write(dir.join(name), data).expect("write seed");
        self.count += 1;
        self.bytes += data.len();
    }

    /// A `proto_decode` seed: the selector byte of `ty`, then `bytes`.
    fn proto(&mut self, ty: &str, name: &str, bytes: &[u8]) {
        let mut data = vec![proto_selector(ty)];
        data.extend_from_slice(bytes);
        self.put(
            "proto_decode",
            &format!("{ty}-{name}").replace("::", "."),
            &data,
        );
    }
}

/// Deterministic bytes (xorshift64*), so regenerated seeds only change where the inputs do.
fn noise(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            (x.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

fn writer_archive(meta: ap::Metadata, elements: &[Element], segment: u32) -> Vec<u8> {
    let opts = WriterOptions {
        segment_size: segment,
        level: 3,
        threads: 0,
        kdf: Argon2Params::DEFAULT,
    };
    let mut w = ArchiveWriter::new(Vec::new(), &archive_key(), meta, &opts).expect("writer");
    for e in elements {
        w.write(e.clone()).expect("write");
    }
    w.finish().expect("finish").0
}

fn sample_elements(n: usize) -> Vec<Element> {
    let conv = |i: u8| ap::Conversation {
        id: vec![i; 16],
        kind: 1 + i32::from(i % 2),
        created_at_ns: 1_700_000_000_000_000_000 + i64::from(i),
        name: format!("group {i}"),
        creator_inbox_id: "a3".repeat(32),
        ..Default::default()
    };
    let mut out = vec![
        Element::Conversation(conv(1)),
        Element::Conversation(conv(2)),
    ];
    for i in 0..n {
        out.push(Element::Message(ap::Message {
            id: noise(i as u64, 32),
            conversation_id: vec![1 + (i % 2) as u8; 16],
            sender_inbox_id: "a3".repeat(32),
            sender_installation_id: vec![7; 32],
            sent_at_ns: 1_700_000_000_000_000_000 + i as i64 * 1_000_000,
            kind: 1,
            content_type: Some(ap::ContentType {
                authority: "ferry.chat".into(),
                type_id: "text".into(),
                major: 1,
                minor: 0,
            }),
            content: format!("message number {i}, with some text to compress").into_bytes(),
            delivery_status: 2,
            ..Default::default()
        }));
    }
    out.push(Element::Consent(ap::Consent {
        entity_type: 1,
        entity: hex(&[1; 16]),
        state: 2,
        updated_at_ns: 1_700_000_000_000_000_000,
    }));
    out
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let root = PathBuf::from(
        args.next()
            .expect("usage: make_seeds OUT [--ferry F]... [--xmtp F]..."),
    );
    let (mut ferry, mut xmtps) = (Vec::new(), Vec::new());
    while let Some(a) = args.next() {
        let f = PathBuf::from(args.next().expect("a path after the flag"));
        match a.as_str() {
            "--ferry" => ferry.push(f),
            "--xmtp" => xmtps.push(f),
            _ => panic!("unknown argument {a}"),
        }
    }
    let mut out = Out {
        root,
        count: 0,
        bytes: 0,
    };
    let meta = ap::Metadata {
        created_at_ns: 1_700_000_000_000_000_000,
        elements: vec![1, 2],
        inbox_id: "a3".repeat(32),
        installation_id: vec![7; 32],
        conversation_count: 2,
        message_count: 40,
        consent_count: 1,
        label: "seed".into(),
        producer: "ferry-fuzz make_seeds".into(),
        ..Default::default()
    };

    // archive_reader: real archives, then archives of the crate's writer and the spec encoder.
    for (i, path) in ferry.iter().enumerate() {
        let data = std::fs::read(path).expect("read a Ferry archive");
        seed_from_ferry(&mut out, i, &data);
        out.put("archive_reader", &format!("real-{i}.ferry"), &data);
    }
    out.put(
        "archive_reader",
        "writer-empty.ferry",
        &writer_archive(ap::Metadata::default(), &[], 4096),
    );
    let elements = sample_elements(40);
    out.put(
        "archive_reader",
        "writer-multichunk.ferry",
        &writer_archive(meta.clone(), &elements, 4096),
    );
    out.put(
        "archive_reader",
        "writer-small.ferry",
        &writer_archive(meta.clone(), &elements[..4], 1 << 20),
    );
    let stream: Vec<u8> = elements[..6]
        .iter()
        .flat_map(|e| frame(&gen::encode_element(e)))
        .collect();
    let cut = stream.len() / 2;
    out.put(
        "archive_reader",
        "spec-split-frames.ferry",
        &spec::archive(
            &ARCHIVE_KEY,
            &[0x33; 32],
            4096,
            &frame(&gen::encode_metadata(&meta)),
            &[
                stream[..cut].to_vec(),
                Vec::new(),
                stream[cut..].to_vec(),
                Vec::new(),
            ],
        ),
    );
    let passphrase = ArchiveWriter::new(
        Vec::new(),
        &ferry_archive::ArchiveKey::passphrase("seed"),
        meta.clone(),
        &WriterOptions {
            segment_size: 4096,
            level: 3,
            threads: 0,
            kdf: Argon2Params {
                m_cost_kib: 64,
                t_cost: 1,
                p_cost: 1,
            },
        },
    )
    .expect("passphrase writer")
    .finish()
    .expect("finish")
    .0;
    out.put("archive_reader", "writer-passphrase.ferry", &passphrase);

    // xmtp_reader: real libxmtp archives, then current-scheme files of the spec encoder.
    for (i, path) in xmtps.iter().enumerate() {
        let data = std::fs::read(path).expect("read a libxmtp archive");
        seed_from_xmtp(&mut out, i, &data);
        out.put("xmtp_reader", &format!("real-{i}.xmtp"), &data);
    }
    let recs = [
        gen::RecSpec::Metadata {
            elements: vec![1, 2],
            exported_at_ns: 1_700_000_000_000_000_000,
            start_ns: None,
            end_ns: Some(1_800_000_000_000_000_000),
        },
        gen::RecSpec::Group {
            id: vec![3; 16],
            created_at_ns: 1_700_000_000_000_000_000,
            membership_state: 1,
            conversation_type: 1,
            dm_id: None,
            creator: Some("b4".repeat(32)),
            attributes: vec![("group_name".into(), "seed group".into())],
            admins: vec!["b4".repeat(32)],
        },
        gen::RecSpec::Message {
            id: vec![4; 32],
            group_id: vec![3; 16],
            content: b"hello there".to_vec(),
            sent_at_ns: 1_700_000_000_000_000_001,
            kind: 1,
            content_type_save: 2,
            sender_inbox_id: "b4".repeat(32),
            reference_id: None,
        },
        gen::RecSpec::Consent {
            entity_type: 1,
            state: 2,
            entity: hex(&[3; 16]),
            consented_at_ns: 1_700_000_000_000_000_002,
        },
    ];
    let n0 = [0x11; 12];
    let stream: Vec<u8> = recs
        .iter()
        .enumerate()
        .flat_map(|(i, r)| xmtp::record(&XMTP_KEY, xmtp::nonce_add(n0, i as u64), &r.plaintext()))
        .collect();
    out.put(
        "xmtp_reader",
        "current.xmtp",
        &xmtp::file(0, n0, &stream, xmtp::Zstd::default()),
    );
    let z = xmtp::Zstd {
        level: 1,
        checksum: true,
        content_size: true,
    };
    out.put(
        "xmtp_reader",
        "current-checksum-size.xmtp",
        &xmtp::file(0, [0xff; 12], &stream, z),
    );

    // proto_decode: typical messages of every kind Ferry receives.
    proto_seeds(&mut out);

    // MLS: a real welcome, commit, application message and key packages (feature `mls`).
    #[cfg(feature = "mls")]
    for (name, data) in ferry_fuzz::targets::mls::seeds() {
        out.put("mls_messages", &name, &data);
    }

    // The structured targets: small deterministic byte strings of a few sizes.
    for (t, target) in [
        "archive_frames",
        "archive_chunks",
        "identity_log",
        "xmtp_records",
    ]
    .iter()
    .enumerate()
    {
        for (j, len) in [16usize, 64, 256, 1024, 4096].iter().enumerate() {
            out.put(
                target,
                &format!("noise-{len}"),
                &noise((t * 10 + j) as u64 + 1, *len),
            );
        }
    }
    eprintln!(
        "wrote {} seeds, {} bytes, under {}",
        out.count,
        out.bytes,
        out.root.display()
    );
}

/// The elements of a real Ferry archive as `proto_decode` seeds (a few of each kind).
fn seed_from_ferry(out: &mut Out, i: usize, data: &[u8]) {
    let mut r = ArchiveReader::open(data, &archive_key())
        .unwrap_or_else(|e| panic!("a --ferry archive must be sealed with ARCHIVE_KEY: {e}"));
    out.proto(
        "archive::Metadata",
        &format!("real-{i}"),
        &r.metadata().encode_to_vec(),
    );
    let mut n = [0usize; 4];
    while let Some(e) = r.next_element().expect("a valid archive") {
        let (k, ty, bytes) = match &e {
            Element::Conversation(c) => (0, "archive::Conversation", c.encode_to_vec()),
            Element::Message(m) => (1, "archive::Message", m.encode_to_vec()),
            Element::Consent(c) => (2, "archive::Consent", c.encode_to_vec()),
            Element::AttachmentPiece(_) | Element::Unknown => continue,
        };
        if n[k] < 3 {
            out.proto(ty, &format!("real-{i}-{}", n[k]), &bytes);
            out.proto(
                "archive::ArchiveElement",
                &format!("real-{i}-{k}-{}", n[k]),
                &gen::encode_element(&e),
            );
        }
        n[k] += 1;
    }
}

/// The records of a real libxmtp archive as `proto_decode` seeds.
fn seed_from_xmtp(out: &mut Out, i: usize, data: &[u8]) {
    use ferry_xmtp_archive::proto::{
        backup_element::Element as E, BackupElement, BackupMetadataSave,
    };
    let mut r = XmtpReader::open(data, &XMTP_KEY).expect("a --xmtp archive with the zero key");
    let m = r.metadata().clone();
    let meta = BackupMetadataSave {
        elements: m
            .elements
            .iter()
            .map(|s| match s {
                ferry_xmtp_archive::Selection::Messages => 1,
                ferry_xmtp_archive::Selection::Consent => 2,
                ferry_xmtp_archive::Selection::Other(x) => *x,
            })
            .collect(),
        exported_at_ns: m.exported_at_ns,
        start_ns: m.start_ns,
        end_ns: m.end_ns,
    };
    let wrap = |e: E| BackupElement { element: Some(e) }.encode_to_vec();
    out.proto(
        "xmtp::BackupElement",
        &format!("real-{i}-metadata"),
        &wrap(E::Metadata(meta)),
    );
    let mut j = 0;
    while let Some(rec) = r.next_record().expect("a valid libxmtp archive") {
        let bytes = match rec {
            XmtpRecord::Group(g) => {
                out.proto(
                    "xmtp::GroupSave",
                    &format!("real-{i}-{j}"),
                    &g.encode_to_vec(),
                );
                wrap(E::Group(g))
            }
            XmtpRecord::Message(m) => {
                out.proto(
                    "xmtp::EncodedContent",
                    &format!("real-{i}-{j}"),
                    &m.decrypted_message_bytes,
                );
                out.proto(
                    "xmtp::GroupMessageSave",
                    &format!("real-{i}-{j}"),
                    &m.encode_to_vec(),
                );
                wrap(E::GroupMessage(m))
            }
            XmtpRecord::Consent(c) => {
                out.proto(
                    "xmtp::ConsentSave",
                    &format!("real-{i}-{j}"),
                    &c.encode_to_vec(),
                );
                wrap(E::Consent(c))
            }
            XmtpRecord::Unknown => continue,
        };
        out.proto("xmtp::BackupElement", &format!("real-{i}-{j}"), &bytes);
        j += 1;
    }
}

fn proto_seeds(out: &mut Out) {
    let ct = message::ContentTypeId {
        authority: "ferry.chat".into(),
        type_id: "text".into(),
        major: 1,
        minor: 0,
    };
    let envelope = message::Envelope {
        content_type: Some(ct.clone()),
        content: b"hello from the fuzz seeds".to_vec(),
        fallback: Some("hello".into()),
        sent_at_ns: 1_700_000_000_000_000_000,
        reference_id: Some(vec![9; 32]),
        parameters: None,
        idempotency_key: None,
    };
    out.proto("message::Envelope", "text", &envelope.encode_to_vec());
    out.proto("message::ContentTypeId", "text", &ct.encode_to_vec());
    let request = message::SyncRequest {
        request_id: "0123456789abcdef".into(),
        messages: true,
        consent: true,
        start_ns: None,
        end_ns: Some(1_800_000_000_000_000_000),
    };
    let reply = message::SyncReply {
        request_id: "0123456789abcdef".into(),
        url: "http://127.0.0.1:7701/files/00112233445566778899aabbccddeeff".into(),
        key: vec![0x42; 32],
        created_at_ns: 1_700_000_000_000_000_000,
        conversation_count: 3,
        message_count: 12,
        messages: true,
        consent: true,
        start_ns: None,
        end_ns: None,
        size_bytes: 2344,
    };
    let prefs = message::PreferenceUpdates {
        consent: vec![message::ConsentUpdate {
            entity_type: 1,
            entity: hex(&[1; 16]),
            state: 2,
            updated_at_ns: 1_700_000_000_000_000_000,
        }],
        hmac_key: Some(message::HmacKeyUpdate {
            secret: vec![0x24; 32],
            revision: 2,
            created_at_ns: 1_700_000_000_000_000_000,
        }),
    };
    use message::sync_payload::Kind;
    for (name, kind) in [
        ("request", Kind::Request(request.clone())),
        ("reply", Kind::Reply(reply.clone())),
        ("preferences", Kind::Preferences(prefs.clone())),
    ] {
        let p = message::SyncPayload { kind: Some(kind) };
        out.proto("message::SyncPayload", name, &p.encode_to_vec());
    }
    out.proto("message::SyncRequest", "a", &request.encode_to_vec());
    out.proto("message::SyncReply", "a", &reply.encode_to_vec());
    out.proto("message::PreferenceUpdates", "a", &prefs.encode_to_vec());
    out.proto(
        "message::HmacKeyUpdate",
        "a",
        &prefs.hmac_key.as_ref().unwrap().encode_to_vec(),
    );
    out.proto(
        "message::ConsentUpdate",
        "a",
        &prefs.consent[0].encode_to_vec(),
    );
    let gm = message::GroupMetadata {
        name: "seed group".into(),
        description: "a group".into(),
        image_url: String::new(),
        creator_inbox_id: "a3".repeat(32),
        dm_members: vec!["a3".repeat(32), "b4".repeat(32)],
        kind: 2,
        created_at_ns: 1_700_000_000_000_000_000,
        ..Default::default()
    };
    out.proto("message::GroupMetadata", "dm", &gm.encode_to_vec());

    // A real identity log: create, add two installations, revoke one.
    let account = Account::new(KeyPair::from_seed(&[1; 32]));
    let inbox = account.inbox_id();
    let mut log = vec![account.create_inbox(1_700_000_000_000_000_000)];
    let mut state = InboxState::replay(&inbox, &log).unwrap();
    let (i1, i2) = (KeyPair::from_seed(&[10; 32]), KeyPair::from_seed(&[11; 32]));
    let add1 = account.add_installation(&state, &i1, 1_700_000_000_000_000_001);
    state.apply(&add1).unwrap();
    log.push(add1);
    let add2 = account.add_installation(&state, &i2, 1_700_000_000_000_000_002);
    state.apply(&add2).unwrap();
    log.push(add2);
    let revoke = account.revoke_installation(&state, &i1.public_key(), 1_700_000_000_000_000_003);
    state.apply(&revoke).unwrap();
    log.push(revoke);
    let logs = node::GetIdentityLogsResponse {
        logs: vec![node::IdentityLog {
            inbox_id: inbox.clone(),
            updates: log.clone(),
        }],
    };
    out.proto(
        "node::GetIdentityLogsResponse",
        "real",
        &logs.encode_to_vec(),
    );
    out.proto("node::IdentityLog", "real", &logs.logs[0].encode_to_vec());
    for (i, u) in log.iter().enumerate() {
        out.proto(
            "identity::IdentityUpdate",
            &format!("real-{i}"),
            &u.encode_to_vec(),
        );
        out.proto(
            "identity::UnsignedIdentityUpdate",
            &format!("real-{i}"),
            &u.unsigned,
        );
    }
    out.proto(
        "node::PublishIdentityUpdateRequest",
        "add",
        &node::PublishIdentityUpdateRequest {
            update: Some(log[1].clone()),
        }
        .encode_to_vec(),
    );
    out.proto(
        "node::GetIdentityLogsRequest",
        "a",
        &node::GetIdentityLogsRequest {
            inbox_ids: vec![inbox],
        }
        .encode_to_vec(),
    );

    // Node traffic (MLS payloads are opaque bytes to these messages).
    let gmsg = |i: u64| node::GroupMessage {
        group_id: vec![1; 16],
        sequence_id: i,
        created_at_ns: 1_700_000_000_000_000_000 + i as i64,
        data: noise(i, 120),
    };
    let q = node::QueryGroupMessagesResponse {
        messages: vec![gmsg(1), gmsg(2)],
        cursor: 2,
    };
    out.proto("node::QueryGroupMessagesResponse", "a", &q.encode_to_vec());
    out.proto("node::GroupMessage", "a", &gmsg(3).encode_to_vec());
    let welcome = node::Welcome {
        installation_id: vec![7; 32],
        sequence_id: 1,
        created_at_ns: 1_700_000_000_000_000_000,
        data: noise(99, 200),
    };
    out.proto("node::Welcome", "a", &welcome.encode_to_vec());
    out.proto(
        "node::QueryWelcomesResponse",
        "a",
        &node::QueryWelcomesResponse {
            welcomes: vec![welcome.clone()],
            cursor: 1,
        }
        .encode_to_vec(),
    );
    out.proto(
        "node::FetchKeyPackagesResponse",
        "a",
        &node::FetchKeyPackagesResponse {
            key_packages: vec![
                node::fetch_key_packages_response::Entry {
                    installation_id: vec![7; 32],
                    key_package: noise(5, 279),
                },
                node::fetch_key_packages_response::Entry {
                    installation_id: vec![8; 32],
                    key_package: Vec::new(),
                },
            ],
        }
        .encode_to_vec(),
    );
    out.proto(
        "node::SendGroupMessagesRequest",
        "a",
        &node::SendGroupMessagesRequest {
            messages: vec![node::GroupMessageInput {
                group_id: vec![1; 16],
                data: noise(6, 100),
                commit_epoch: Some(3),
            }],
        }
        .encode_to_vec(),
    );
    out.proto(
        "node::SendWelcomesRequest",
        "a",
        &node::SendWelcomesRequest {
            welcomes: vec![node::WelcomeInput {
                installation_id: vec![7; 32],
                data: noise(7, 150),
            }],
        }
        .encode_to_vec(),
    );
    out.proto(
        "node::QueryGroupMessagesRequest",
        "a",
        &node::QueryGroupMessagesRequest {
            group_id: vec![1; 16],
            after_sequence_id: 5,
            limit: 100,
        }
        .encode_to_vec(),
    );
    out.proto(
        "node::UploadKeyPackageRequest",
        "a",
        &node::UploadKeyPackageRequest {
            key_package: noise(8, 279),
            last_resort: true,
            installation_id: vec![7; 32],
        }
        .encode_to_vec(),
    );
}
