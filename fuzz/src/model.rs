//! What a conforming reader returns for an archive whose chunks all authenticate and decompress
//! (docs/archive-format.md §6 and the frame table of §9), written from the spec: the reference the
//! `archive_chunks` target holds `ferry_archive::ArchiveReader` to.

use ferry_archive::proto::{archive_element, ArchiveElement, Metadata};
use ferry_archive::{Element, MAX_FRAME};
use prost::Message;

/// The errors a frame stream can produce (everything but `FrameTooLarge` is `Malformed`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    Malformed,
    FrameTooLarge,
}

impl FrameError {
    pub fn matches(self, e: &ferry_archive::Error) -> bool {
        matches!(
            (self, e),
            (FrameError::Malformed, ferry_archive::Error::Malformed(_))
                | (
                    FrameError::FrameTooLarge,
                    ferry_archive::Error::FrameTooLarge { .. }
                )
        )
    }
}

/// The reader's expected results: the metadata (if opening succeeds), the elements it yields in
/// order, then either the clean end (`error == None`) or that error.
#[derive(Debug)]
pub struct Expected {
    pub metadata: Option<Metadata>,
    pub elements: Vec<Element>,
    pub error: Option<FrameError>,
}

/// One frame at `pos`: `Ok(None)` at the end of the stream, else the decoded element and the
/// position after it.
fn next_frame(s: &[u8], pos: usize) -> Result<Option<(ArchiveElement, usize)>, FrameError> {
    if pos == s.len() {
        return Ok(None);
    }
    // A varint of at most 9 bytes (§9: "varint longer than 9 bytes" is Malformed).
    let mut len: u64 = 0;
    let mut i = 0;
    loop {
        let Some(&b) = s.get(pos + i) else {
            return Err(FrameError::Malformed); // the stream ends inside the length
        };
        len |= u64::from(b & 0x7f) << (7 * i);
        i += 1;
        if b & 0x80 == 0 {
            break;
        }
        if i == 9 {
            return Err(FrameError::Malformed);
        }
    }
    if len > MAX_FRAME {
        return Err(FrameError::FrameTooLarge);
    }
    let start = pos + i;
    let end = start
        .checked_add(len as usize)
        .filter(|&e| e <= s.len())
        .ok_or(FrameError::Malformed)?;
    let element = ArchiveElement::decode(&s[start..end]).map_err(|_| FrameError::Malformed)?;
    Ok(Some((element, end)))
}

/// The expected result for chunk 0's plaintext `chunk0` followed by the plaintext of every later
/// chunk, concatenated (`rest`).
pub fn expect(chunk0: &[u8], rest: &[u8]) -> Expected {
    let mut stream = chunk0.to_vec();
    stream.extend_from_slice(rest);
    let fail = |error| Expected {
        metadata: None,
        elements: Vec::new(),
        error: Some(error),
    };
    // §6: exactly one metadata frame, alone in chunk 0.
    let (metadata, mut pos) = match next_frame(&stream, 0) {
        Err(e) => return fail(e),
        Ok(Some((
            ArchiveElement {
                element: Some(archive_element::Element::Metadata(m)),
            },
            end,
        ))) if end == chunk0.len() => (m, end),
        Ok(_) => return fail(FrameError::Malformed),
    };
    let mut out = Expected {
        metadata: Some(metadata),
        elements: Vec::new(),
        error: None,
    };
    loop {
        match next_frame(&stream, pos) {
            Ok(None) => return out,
            Err(e) => {
                out.error = Some(e);
                return out;
            }
            Ok(Some((el, end))) => {
                pos = end;
                out.elements.push(match el.element {
                    Some(archive_element::Element::Conversation(c)) => Element::Conversation(c),
                    Some(archive_element::Element::Message(m)) => Element::Message(m),
                    Some(archive_element::Element::Consent(c)) => Element::Consent(c),
                    Some(archive_element::Element::AttachmentPiece(a)) => {
                        Element::AttachmentPiece(a)
                    }
                    None => Element::Unknown,
                    // A second metadata, or a signature in the frames of an unsigned (1.0)
                    // archive (§15: only a signed archive's final chunk holds one).
                    Some(archive_element::Element::Metadata(_))
                    | Some(archive_element::Element::Signature(_)) => {
                        out.error = Some(FrameError::Malformed);
                        return out;
                    }
                });
            }
        }
    }
}
