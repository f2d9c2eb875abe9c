//! Writing archives: frames are appended to a segment buffer; full segments are compressed and
//! sealed on worker threads and written in order by the caller's thread.

use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender};
use ferry_proto::archive::{archive_element, ArchiveElement, Metadata};
use prost::Message;

use crate::chunk::{ChunkCipher, TAG_LEN};
use crate::error::{Error, Result};
use crate::header::{Header, HEADER_LEN, MAX_SEGMENT, MIN_SEGMENT};
use crate::key::{ArchiveKey, Argon2Params};
use crate::signature::{sign_frame, signing_input, ArchiveSigner, ChunkHash, SignedBy};
use crate::{Element, MAX_FRAME};

/// How an archive is written.
#[derive(Debug, Clone)]
pub struct WriterOptions {
    /// Plaintext bytes per chunk (compressed and sealed independently). Default 1 MiB.
    pub segment_size: u32,
    /// zstd level. Default 3.
    pub level: i32,
    /// Compression threads; 0 compresses on the caller's thread. Default: the machine's cores.
    pub threads: usize,
    /// Argon2id parameters for passphrase keys (ignored for raw keys).
    pub kdf: Argon2Params,
}

impl Default for WriterOptions {
    fn default() -> Self {
        WriterOptions {
            segment_size: 1 << 20,
            level: 3,
            threads: std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            kdf: Argon2Params::DEFAULT,
        }
    }
}

/// What a finished archive holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// Bytes written, header included.
    pub bytes_written: u64,
    /// Frame bytes before compression, metadata included.
    pub plaintext_bytes: u64,
    /// Chunks written, the metadata chunk included.
    pub chunks: u64,
    /// Elements written after the metadata.
    pub elements: u64,
    /// Whether the archive is signed (format 1.1; its final chunk holds the signature).
    pub signed: bool,
}

struct Job {
    index: u64,
    last: bool,
    data: Vec<u8>,
    done: Sender<Result<Vec<u8>>>,
}

/// Writes one archive to `W`.
///
/// Dropping a writer without calling [`ArchiveWriter::finish`] stops its workers and leaves an
/// archive with no final chunk, which every reader rejects as truncated; callers that write files should write to a
/// temporary path and rename on success (the SDK does).
pub struct ArchiveWriter<W: Write> {
    out: W,
    cipher: Arc<ChunkCipher>,
    level: i32,
    segment_size: usize,
    segment: Vec<u8>,
    next_index: u64,
    in_flight: VecDeque<Receiver<Result<Vec<u8>>>>,
    max_in_flight: usize,
    pool: Pool,
    compressor: Option<zstd::bulk::Compressor<'static>>,
    summary: Summary,
    /// Signed archives: the signer, and the running hash of the chunks written so far.
    signer: Option<Arc<dyn ArchiveSigner>>,
    chunk_hash: Option<ChunkHash>,
    header: [u8; HEADER_LEN],
}

impl<W: Write> ArchiveWriter<W> {
    /// Writes the header and the metadata chunk of an unsigned archive (format 1.0).
    pub fn new(out: W, key: &ArchiveKey, metadata: Metadata, opts: &WriterOptions) -> Result<Self> {
        Self::start(out, key, metadata, opts, None)
    }

    /// Writes the header and the metadata chunk of an archive signed by `signer` (format 1.1):
    /// the metadata names its inbox and installation (filled in when empty; naming others is
    /// an error), and [`ArchiveWriter::finish`] asks it for one signature over the header and
    /// every chunk, written alone in the final chunk (docs/archive-format.md §15).
    pub fn signed(
        out: W,
        key: &ArchiveKey,
        mut metadata: Metadata,
        opts: &WriterOptions,
        signer: Arc<dyn ArchiveSigner>,
    ) -> Result<Self> {
        let installation = signer.installation_id();
        if signer.inbox_id().is_empty() {
            return Err(Error::Signer("the signer names no inbox".into()));
        }
        if metadata.inbox_id.is_empty() {
            metadata.inbox_id = signer.inbox_id().to_string();
        }
        if metadata.installation_id.is_empty() {
            metadata.installation_id = installation.to_vec();
        }
        if metadata.inbox_id != signer.inbox_id() || metadata.installation_id != installation {
            return Err(Error::Signer(
                "the metadata names another inbox or installation than the signer".into(),
            ));
        }
        Self::start(out, key, metadata, opts, Some(signer))
    }

    fn start(
        mut out: W,
        key: &ArchiveKey,
        metadata: Metadata,
        opts: &WriterOptions,
        signer: Option<Arc<dyn ArchiveSigner>>,
    ) -> Result<Self> {
        if !(MIN_SEGMENT..=MAX_SEGMENT).contains(&opts.segment_size) {
            return Err(Error::Malformed(format!(
                "segment size must be between {MIN_SEGMENT} and {MAX_SEGMENT}"
            )));
        }
        let (header, keys) = Header::seal(key, opts.segment_size, opts.kdf, signer.is_some())?;
        out.write_all(header.as_bytes())?;
        let cipher = Arc::new(ChunkCipher::new(&keys));
        drop(keys);

        let (jobs, workers) = if opts.threads > 0 {
            let (tx, rx) = bounded::<Job>(opts.threads * 2);
            let workers = (0..opts.threads)
                .map(|_| {
                    let rx = rx.clone();
                    let cipher = cipher.clone();
                    let level = opts.level;
                    std::thread::spawn(move || {
                        let mut c = zstd::bulk::Compressor::new(level).ok();
                        for job in rx {
                            let r = match c.as_mut() {
                                Some(c) => seal_segment(c, &cipher, job.index, job.last, &job.data),
                                None => Err(Error::Malformed("zstd init failed".into())),
                            };
                            let _ = job.done.send(r);
                        }
                    })
                })
                .collect();
            (Some(tx), workers)
        } else {
            (None, Vec::new())
        };

        let mut w = ArchiveWriter {
            out,
            cipher,
            level: opts.level,
            segment_size: opts.segment_size as usize,
            segment: Vec::with_capacity(opts.segment_size as usize + 1024),
            next_index: 0,
            in_flight: VecDeque::new(),
            max_in_flight: opts.threads * 2 + 1,
            pool: Pool { jobs, workers },
            compressor: None,
            summary: Summary {
                bytes_written: header.as_bytes().len() as u64,
                signed: signer.is_some(),
                ..Summary::default()
            },
            chunk_hash: signer.as_ref().map(|_| ChunkHash::default()),
            signer,
            header: *header.as_bytes(),
        };
        // Chunk 0 holds the metadata frame alone, so readers of metadata open one chunk.
        let meta = ArchiveElement {
            element: Some(archive_element::Element::Metadata(metadata)),
        };
        let mut frame = Vec::new();
        encode_frame(&meta, &mut frame)?;
        if frame.len() > w.segment_size {
            // Readers take chunk 0 as one segment.
            return Err(Error::Malformed(format!(
                "metadata of {} bytes does not fit in one {}-byte segment (is the label too long?)",
                frame.len(),
                w.segment_size
            )));
        }
        w.summary.plaintext_bytes += frame.len() as u64;
        w.dispatch(frame, false)?;
        Ok(w)
    }

    /// Appends one element.
    pub fn write(&mut self, element: Element) -> Result<()> {
        let element = ArchiveElement {
            element: Some(match element {
                Element::Conversation(c) => archive_element::Element::Conversation(c),
                Element::Message(m) => archive_element::Element::Message(m),
                Element::Consent(c) => archive_element::Element::Consent(c),
                Element::AttachmentPiece(a) => archive_element::Element::AttachmentPiece(a),
                Element::Unknown => {
                    return Err(Error::Malformed("cannot write an unknown element".into()))
                }
            }),
        };
        let before = self.segment.len();
        encode_frame(&element, &mut self.segment)?;
        self.summary.plaintext_bytes += (self.segment.len() - before) as u64;
        self.summary.elements += 1;
        self.flush_full_segments()
    }

    fn flush_full_segments(&mut self) -> Result<()> {
        // A full segment is sent only once bytes beyond it exist, so the final chunk is never
        // empty-by-accident and always carries the last flag.
        while self.segment.len() > self.segment_size {
            let rest = self.segment.split_off(self.segment_size);
            let full = std::mem::replace(&mut self.segment, rest);
            self.segment
                .reserve(self.segment_size + 1024 - self.segment.len().min(self.segment_size));
            self.dispatch(full, false)?;
        }
        Ok(())
    }

    /// Appends one element given as the protobuf encoding of an `ArchiveElement`, verbatim:
    /// for tools that copy elements between archives, including kinds this version does not
    /// know (written by a newer 1.x writer). The bytes are not checked beyond the frame limit.
    pub fn write_encoded(&mut self, element: &[u8]) -> Result<()> {
        if element.len() as u64 > MAX_FRAME {
            return Err(Error::FrameTooLarge {
                len: element.len() as u64,
                max: MAX_FRAME,
            });
        }
        let before = self.segment.len();
        prost::encoding::encode_varint(element.len() as u64, &mut self.segment);
        self.segment.extend_from_slice(element);
        self.summary.plaintext_bytes += (self.segment.len() - before) as u64;
        self.summary.elements += 1;
        self.flush_full_segments()
    }

    /// What has been written so far.
    pub fn summary(&self) -> Summary {
        self.summary
    }

    /// Seals the final chunk, flushes, and returns the output and a summary. A signed archive's
    /// last elements go in a chunk of their own; once every chunk is written, the signer signs
    /// and the signature alone makes the final chunk.
    pub fn finish(mut self) -> Result<(W, Summary)> {
        let last = std::mem::take(&mut self.segment);
        match self.signer.take() {
            None => self.dispatch(last, true)?,
            Some(signer) => {
                if !last.is_empty() {
                    self.dispatch(last, false)?;
                }
                while !self.in_flight.is_empty() {
                    self.write_oldest()?;
                }
                let who = SignedBy {
                    inbox_id: signer.inbox_id().to_string(),
                    installation_id: signer.installation_id(),
                };
                // Taken, so the final chunk is not hashed: the signature covers what precedes it.
                let hash = self.chunk_hash.take().expect("signed writers hash chunks");
                let frame = sign_frame(signer.as_ref(), &signing_input(&self.header, &who, hash))?;
                self.summary.plaintext_bytes += frame.len() as u64;
                self.dispatch(frame, true)?;
            }
        }
        while !self.in_flight.is_empty() {
            self.write_oldest()?;
        }
        self.out.flush()?;
        Ok((self.out, self.summary))
    }

    fn dispatch(&mut self, data: Vec<u8>, last: bool) -> Result<()> {
        let index = self.next_index;
        self.next_index += 1;
        match &self.pool.jobs {
            Some(jobs) => {
                let (tx, rx) = bounded(1);
                jobs.send(Job {
                    index,
                    last,
                    data,
                    done: tx,
                })
                .map_err(|_| Error::Malformed("compression worker stopped".into()))?;
                self.in_flight.push_back(rx);
                while self.in_flight.len() >= self.max_in_flight {
                    self.write_oldest()?;
                }
            }
            None => {
                if self.compressor.is_none() {
                    self.compressor = Some(
                        zstd::bulk::Compressor::new(self.level)
                            .map_err(|e| Error::Malformed(format!("zstd: {e}")))?,
                    );
                }
                let c = self.compressor.as_mut().expect("set above");
                let sealed = seal_segment(c, &self.cipher, index, last, &data)?;
                self.write_chunk(&sealed)?;
            }
        }
        Ok(())
    }

    fn write_oldest(&mut self) -> Result<()> {
        let rx = self.in_flight.pop_front().expect("non-empty");
        let sealed = rx
            .recv()
            .map_err(|_| Error::Malformed("compression worker stopped".into()))??;
        self.write_chunk(&sealed)
    }

    fn write_chunk(&mut self, sealed: &[u8]) -> Result<()> {
        if let Some(h) = &mut self.chunk_hash {
            h.chunk(sealed);
        }
        self.out.write_all(&(sealed.len() as u32).to_le_bytes())?;
        self.out.write_all(sealed)?;
        self.summary.bytes_written += 4 + sealed.len() as u64;
        self.summary.chunks += 1;
        Ok(())
    }
}

/// The compression workers; dropping it closes the job queue and joins them.
struct Pool {
    jobs: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
}

impl Drop for Pool {
    fn drop(&mut self) {
        self.jobs = None;
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn seal_segment(
    c: &mut zstd::bulk::Compressor<'static>,
    cipher: &ChunkCipher,
    index: u64,
    last: bool,
    data: &[u8],
) -> Result<Vec<u8>> {
    let mut out = c
        .compress(data)
        .map_err(|e| Error::Malformed(format!("zstd: {e}")))?;
    out.reserve_exact(TAG_LEN);
    cipher.seal(index, last, &mut out)?;
    Ok(out)
}

fn encode_frame(element: &ArchiveElement, buf: &mut Vec<u8>) -> Result<()> {
    let len = element.encoded_len();
    if len as u64 > MAX_FRAME {
        return Err(Error::FrameTooLarge {
            len: len as u64,
            max: MAX_FRAME,
        });
    }
    prost::encoding::encode_varint(len as u64, buf);
    element.encode(buf).expect("Vec grows");
    Ok(())
}
