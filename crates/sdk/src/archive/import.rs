//! Importing an archive into a store: additive, all or nothing, duplicates ignored; Ferry
//! archives and libxmtp archives alike.

use super::*;

/// Imports an archive into `store`: one transaction, additive, duplicates skipped. Ferry and
/// libxmtp archives are both recognised.
pub fn import_archive(
    store: &mut Store,
    path: &Path,
    key: &ArchiveKey,
    ctl: &Control,
) -> Result<ImportReport> {
    let (f, format, len) = sniff(path)?;
    // Opening (header, key check, metadata) happens before any write.
    let mut report = match format {
        ArchiveFormat::Xmtp => {
            let s = xmtp::source(f, key)?;
            apply_source(store, len, ctl, s)
        }
        ArchiveFormat::Ferry => {
            let s = ferry_source(f, key)?;
            apply_source(store, len, ctl, s)
        }
    }?;
    report.format = format;
    Ok(report)
}

/// Imports what `s` reads; the report names the signer of a signed archive, whose signature
/// the reader verified before the end (so before the commit).
fn apply_source<P>(store: &mut Store, len: u64, ctl: &Control, s: Source<P>) -> Result<ImportReport>
where
    P: FnOnce(&BatchSink) -> Result<()> + Send,
{
    let report = apply_items(store, len, s.elements_total, s.messages, ctl, s.produce)?;
    Ok(report.signed(s.signed_by))
}

impl ImportReport {
    /// The report of an archive read to its end: signed by `signed_by` (whose signature the
    /// reader verified), or unsigned.
    pub(crate) fn signed(mut self, signed_by: Option<SignedBy>) -> Self {
        self.signature = match signed_by {
            Some(_) => SignatureStatus::Valid,
            None => SignatureStatus::Unsigned,
        };
        self.signed_by = signed_by;
        self
    }
}

/// One decoded, converted batch from the reading thread.
pub(crate) enum Item {
    Conversation(ferry_store::Conversation),
    Message(ferry_store::Message),
    Consent(ferry_store::ConsentRecord),
    /// A whole attachment file, its pieces joined and its digest checked.
    AttachmentFile {
        digest: String,
        data: Vec<u8>,
    },
    Skipped,
}

/// Joins an archive's attachment pieces into files: each file's pieces in offset order from
/// 0, and the whole must hash to its digest.
#[derive(Default)]
pub(crate) struct PieceJoiner {
    current: Option<(String, u64, Vec<u8>)>,
}

impl PieceJoiner {
    /// Takes one piece; returns the file it completes.
    pub(crate) fn push(&mut self, p: pb::AttachmentPiece) -> Result<Option<Item>> {
        let bad = |what: String| Error::InvalidArchive(format!("attachment file {what}"));
        if p.offset == 0 {
            if let Some((digest, _, _)) = &self.current {
                return Err(bad(format!("{digest} ends early")));
            }
            if p.total_length > MAX_ATTACHMENT_FILE {
                return Err(bad(format!(
                    "{} is {} bytes, more than {MAX_ATTACHMENT_FILE}",
                    p.content_digest, p.total_length
                )));
            }
            self.current = Some((
                p.content_digest.clone(),
                p.total_length,
                Vec::with_capacity(p.total_length as usize),
            ));
        }
        let Some((digest, total, data)) = &mut self.current else {
            return Err(bad(format!(
                "{} starts at {}, not 0",
                p.content_digest, p.offset
            )));
        };
        if p.content_digest != *digest || p.offset != data.len() as u64 || p.total_length != *total
        {
            return Err(bad(format!("{digest}: pieces out of order")));
        }
        if data.len() as u64 + p.data.len() as u64 > *total {
            return Err(bad(format!("{digest} is longer than it says")));
        }
        data.extend_from_slice(&p.data);
        if data.len() as u64 != *total {
            return Ok(None);
        }
        let (digest, _, data) = self.current.take().expect("a file in progress");
        if ferry_content::remote::digest(&data) != digest.to_ascii_lowercase() {
            return Err(bad(format!("{digest} does not match its digest")));
        }
        Ok(Some(Item::AttachmentFile { digest, data }))
    }

    /// The end of the archive: no file may be left half read.
    pub(crate) fn finish(&self) -> Result<()> {
        match &self.current {
            Some((digest, _, _)) => Err(Error::InvalidArchive(format!(
                "attachment file {digest} ends early"
            ))),
            None => Ok(()),
        }
    }
}

/// The largest attachment file an archive may carry (what an import holds in memory at once).
pub(crate) const MAX_ATTACHMENT_FILE: u64 = 1 << 30;

pub(crate) const BATCH: usize = 2048;

/// Where a reading thread sends decoded batches; it also takes back applied batches to free.
pub(crate) struct BatchSink {
    tx: crossbeam_channel::Sender<(Vec<Item>, u64)>,
    back: crossbeam_channel::Receiver<Vec<Item>>,
}

impl BatchSink {
    /// Sends a batch (and how many input bytes have been read); false when the writing side
    /// has stopped.
    pub(crate) fn send(&self, batch: Vec<Item>, bytes_read: u64) -> bool {
        while let Ok(done) = self.back.try_recv() {
            drop(done);
        }
        self.tx.send((batch, bytes_read)).is_ok()
    }
}

/// An opened archive ready to stream: the element and message counts its metadata announces
/// (0 when the format has none), who signed it (verified by the reading thread before it
/// reports the end) and the work of the reading thread.
pub(crate) struct Source<P> {
    pub(crate) elements_total: u64,
    pub(crate) messages: u64,
    pub(crate) signed_by: Option<SignedBy>,
    pub(crate) produce: P,
}

/// Opens a Ferry archive (header, key check, metadata) and returns its reading work, which
/// decrypts, decompresses, decodes and converts every element in order.
pub(crate) fn ferry_source(
    f: File,
    key: &ArchiveKey,
) -> Result<Source<impl FnOnce(&BatchSink) -> Result<()> + Send>> {
    let mut reader = ArchiveReader::open(BufReader::with_capacity(1 << 20, f), key)?;
    // The reader reports the end only once a signed archive's signature has verified, and an
    // import commits only at the end: a signature that fails rolls everything back.
    let signed_by = reader.signed_by().map(SignedBy::from);
    let m = reader.metadata();
    let elements_total =
        m.conversation_count + m.message_count + m.consent_count + m.attachment_piece_count;
    let messages = m.message_count;
    let produce = move |tx: &BatchSink| -> Result<()> {
        let mut batch = Vec::with_capacity(BATCH);
        let mut files = PieceJoiner::default();
        while let Some(e) = reader.next_element()? {
            batch.push(match e {
                Element::Conversation(c) => Item::Conversation(convert::conversation_from_pb(c)?),
                Element::Message(m) => Item::Message(convert::message_from_pb(m)?),
                Element::Consent(c) => Item::Consent(convert::consent_from_pb(c)?),
                Element::AttachmentPiece(p) => match files.push(p)? {
                    Some(file) => file,
                    None => continue,
                },
                Element::Unknown => Item::Skipped,
            });
            if batch.len() == BATCH {
                let b = std::mem::replace(&mut batch, Vec::with_capacity(BATCH));
                if !tx.send(b, reader.bytes_read()) {
                    return Ok(());
                }
            }
        }
        files.finish()?;
        tx.send(batch, reader.bytes_read());
        Ok(())
    };
    Ok(Source {
        elements_total,
        messages,
        signed_by,
        produce,
    })
}

/// Where archive items go: the store's [`ferry_store::Merge`] (an import) or a preview's
/// read-only probe. Both answer the same questions, so [`consume`] counts the same way for
/// both.
pub(crate) trait Target {
    /// Adds a conversation, or says one with its id is already known.
    fn conversation(&mut self, c: &Conversation) -> Result<ConversationOutcome>;
    /// Whether a conversation is known (stored, or added earlier in this archive).
    fn has_conversation(&mut self, id: &[u8]) -> Result<bool>;
    /// Adds a message unless its id is known; true when added.
    fn message(&mut self, m: &Message) -> Result<bool>;
    /// Applies a consent record if newer than the known one; true when applied.
    fn consent(&mut self, c: &ConsentRecord) -> Result<bool>;
    /// Keeps an attachment file unless one with its digest is kept; true when kept.
    fn attachment_file(&mut self, digest: &str, data: &[u8]) -> Result<bool>;
}

impl Target for ferry_store::Merge<'_> {
    fn conversation(&mut self, c: &Conversation) -> Result<ConversationOutcome> {
        Ok(ferry_store::Merge::conversation(self, c)?)
    }
    fn has_conversation(&mut self, id: &[u8]) -> Result<bool> {
        Ok(ferry_store::Merge::has_conversation(self, id))
    }
    fn message(&mut self, m: &Message) -> Result<bool> {
        Ok(ferry_store::Merge::message(self, m)?)
    }
    fn consent(&mut self, c: &ConsentRecord) -> Result<bool> {
        Ok(ferry_store::Merge::consent(self, c)?)
    }
    fn attachment_file(&mut self, digest: &str, data: &[u8]) -> Result<bool> {
        Ok(ferry_store::Merge::attachment_file(self, digest, data)?)
    }
}

/// Runs `produce` on a second thread (decrypting, decompressing, decoding) while this thread
/// writes into one transaction, which commits only when everything was read and verified.
pub(crate) fn apply_items<P>(
    store: &mut Store,
    bytes_total: u64,
    elements_total: u64,
    expected_messages: u64,
    ctl: &Control,
    produce: P,
) -> Result<ImportReport>
where
    P: FnOnce(&BatchSink) -> Result<()> + Send,
{
    let mut merge = store.merge_expecting(expected_messages)?;
    let report = stream_items(&mut merge, bytes_total, elements_total, ctl, produce)?;
    // Dropping `merge` on any error above rolled everything back.
    merge.commit()?;
    ctl.report(Progress {
        bytes_done: bytes_total,
        bytes_total,
        elements_done: elements_total,
        elements_total,
    });
    Ok(report)
}

/// Runs `produce` on a second thread while this thread hands its items to `target`, and
/// counts what happened to them.
pub(crate) fn stream_items<T, P>(
    target: &mut T,
    bytes_total: u64,
    elements_total: u64,
    ctl: &Control,
    produce: P,
) -> Result<ImportReport>
where
    T: Target,
    P: FnOnce(&BatchSink) -> Result<()> + Send,
{
    let (tx, rx) = crossbeam_channel::bounded::<(Vec<Item>, u64)>(8);
    let (back_tx, back_rx) = crossbeam_channel::unbounded::<Vec<Item>>();
    let tx = BatchSink { tx, back: back_rx };
    std::thread::scope(|s| {
        let producer = s.spawn(move || produce(&tx));
        let applied = consume(target, &rx, &back_tx, bytes_total, elements_total, ctl);
        // Stop the producer if we failed early, then learn whether it failed.
        drop(rx);
        let produced = producer.join().expect("archive reader thread panicked");
        let report = applied?;
        produced?;
        Ok(report)
    })
}

fn consume<T: Target>(
    merge: &mut T,
    rx: &crossbeam_channel::Receiver<(Vec<Item>, u64)>,
    back: &crossbeam_channel::Sender<Vec<Item>>,
    bytes_total: u64,
    elements_total: u64,
    ctl: &Control,
) -> Result<ImportReport> {
    let mut report = ImportReport::default();
    let mut done = 0u64;
    let mut last_report = 0u64;
    for (batch, bytes) in rx.iter() {
        ctl.check()?;
        for item in &batch {
            done += 1;
            match item {
                Item::Conversation(c) => match merge.conversation(c)? {
                    ConversationOutcome::Added => report.conversations_added += 1,
                    ConversationOutcome::Existing => report.conversations_merged += 1,
                },
                Item::Message(m) => {
                    if !merge.has_conversation(&m.conversation_id)? {
                        return Err(Error::InvalidArchive(format!(
                            "message {} refers to conversation {} that the archive does not hold",
                            hex::encode(&m.id),
                            hex::encode(&m.conversation_id)
                        )));
                    }
                    if merge.message(m)? {
                        report.messages_imported += 1;
                    } else {
                        report.messages_skipped += 1;
                    }
                }
                Item::Consent(c) => {
                    if merge.consent(c)? {
                        report.consent_applied += 1;
                    } else {
                        report.consent_skipped += 1;
                    }
                }
                Item::AttachmentFile { digest, data } => {
                    if merge.attachment_file(digest, data)? {
                        report.attachments_imported += 1;
                    } else {
                        report.attachments_skipped += 1;
                    }
                }
                Item::Skipped => report.unknown_skipped += 1,
            }
        }
        // The reading thread allocated these; it frees them too (cheaper than a cross-thread
        // free with the system allocator).
        let _ = back.send(batch);
        if done - last_report >= REPORT_EVERY {
            last_report = done;
            ctl.report(Progress {
                bytes_done: bytes,
                bytes_total,
                elements_done: done,
                elements_total,
            });
        }
    }
    ctl.check()?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn piece(data: &[u8], offset: usize, len: usize, total: &[u8]) -> pb::AttachmentPiece {
        pb::AttachmentPiece {
            content_digest: ferry_content::remote::digest(total),
            offset: offset as u64,
            total_length: total.len() as u64,
            data: data[offset..offset + len].to_vec(),
        }
    }

    #[test]
    fn pieces_join_into_files_only_whole_in_order_and_matching_their_digest() {
        let file: Vec<u8> = (0..3000u32).map(|i| i as u8).collect();
        let mut j = PieceJoiner::default();
        assert!(j.push(piece(&file, 0, 1000, &file)).unwrap().is_none());
        assert!(j.push(piece(&file, 1000, 1000, &file)).unwrap().is_none());
        assert!(j.finish().is_err(), "a file left half read");
        match j.push(piece(&file, 2000, 1000, &file)).unwrap() {
            Some(Item::AttachmentFile { data, .. }) => assert_eq!(data, file),
            _ => panic!("a whole file"),
        }
        j.finish().unwrap();

        // Out of order, not from 0, or bytes that do not hash to the digest: refused.
        let mut j = PieceJoiner::default();
        j.push(piece(&file, 0, 1000, &file)).unwrap();
        assert!(j.push(piece(&file, 2000, 1000, &file)).is_err());
        let mut j = PieceJoiner::default();
        assert!(j.push(piece(&file, 1000, 1000, &file)).is_err());
        let mut damaged = file.clone();
        damaged[5] ^= 1;
        let mut p = piece(&damaged, 0, 3000, &damaged);
        p.content_digest = ferry_content::remote::digest(&file);
        let mut j = PieceJoiner::default();
        assert!(j.push(p).is_err());
        // A second file may not start before the first ends.
        let mut j = PieceJoiner::default();
        j.push(piece(&file, 0, 1000, &file)).unwrap();
        assert!(j.push(piece(&file, 0, 1000, &file)).is_err());
    }
}
