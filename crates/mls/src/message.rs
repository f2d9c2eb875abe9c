//! Application messages out ([`encrypt`]) and everything in ([`process`]).

use openmls::framing::errors::{MessageDecryptionError, SecretTreeError};
use openmls::prelude::{
    MlsGroupStateError, MlsMessageBodyIn, ProcessMessageError, ProcessedMessageContent,
    ProtocolMessage, ValidationError,
};

use crate::storage::atomic_on;
use crate::wire::{body_name, credential_id, deserialize, serialize};
use crate::{epoch, mls_err, Error, Identity, MlsGroup, Provider, Result};

/// Encrypts an application message for the group's current epoch.
pub fn encrypt(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    plaintext: &[u8],
) -> Result<Vec<u8>> {
    atomic_on(group, provider, |group| {
        let msg = group
            .create_message(provider, &identity.keys, plaintext)
            .map_err(|e| match e {
                openmls::group::CreateMessageError::GroupStateError(
                    MlsGroupStateError::UseAfterEviction,
                ) => Error::Removed,
                e => mls_err("encrypting a message")(e),
            })?;
        serialize(&msg)
    })
}

/// What [`process`] made of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Processed {
    /// An application message and the installation id of its sender.
    Application { sender: Vec<u8>, plaintext: Vec<u8> },
    /// A commit, merged: the group is now at `epoch`.
    Commit {
        /// Installation id of the member that committed.
        committer: Vec<u8>,
        epoch: u64,
        /// Installation ids added by this commit.
        added: Vec<Vec<u8>>,
        /// Installation ids removed by this commit.
        removed: Vec<Vec<u8>>,
        /// This installation was removed: the group is now inactive.
        self_removed: bool,
    },
    /// This installation's own pending commit, met in the delivery order before any rival:
    /// it is merged now and the group is at `epoch`.
    OwnCommit { epoch: u64 },
    /// A standalone proposal. Ferry sends none, and one from a member is not queued: a queued
    /// proposal would block sending and ride along, unchecked, in this installation's next
    /// commit.
    Proposal,
    /// Nothing to apply: an echo of this installation's own message, or an external join
    /// proposal (not queued).
    Other,
}

/// Decrypts and applies one message from the group's channel (commits are merged).
pub fn process(group: &mut MlsGroup, provider: &Provider<'_>, message: &[u8]) -> Result<Processed> {
    let message: ProtocolMessage = match deserialize(message)?.extract() {
        MlsMessageBodyIn::PrivateMessage(m) => m.into(),
        MlsMessageBodyIn::PublicMessage(m) => m.into(),
        other => {
            return Err(Error::UnexpectedMessage {
                expected: "group message",
                got: body_name(&other),
            })
        }
    };
    let message_epoch = message.epoch().as_u64();
    atomic_on(group, provider, |group| {
        let group_epoch = epoch(group);
        let processed = group
            .process_message(provider, message)
            .map_err(|e| match e {
                ProcessMessageError::ValidationError(ValidationError::WrongEpoch) => {
                    Error::WrongEpoch {
                        message: message_epoch,
                        group: group_epoch,
                    }
                }
                // Public messages of a dropped epoch fail here; private ones fail in the
                // secret tree (which says the same of a generation too old in this epoch).
                ProcessMessageError::ValidationError(ValidationError::NoPastEpochData) => {
                    Error::EpochTooOld {
                        message: message_epoch,
                        group: group_epoch,
                    }
                }
                ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(
                    MessageDecryptionError::SecretTreeError(SecretTreeError::TooDistantInThePast),
                )) if message_epoch < group_epoch => Error::EpochTooOld {
                    message: message_epoch,
                    group: group_epoch,
                },
                ProcessMessageError::ValidationError(ValidationError::WrongGroupId) => {
                    Error::WrongGroup
                }
                ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(e)) => {
                    Error::Undecryptable(e)
                }
                ProcessMessageError::GroupStateError(MlsGroupStateError::UseAfterEviction) => {
                    Error::Removed
                }
                ProcessMessageError::StorageError(e) => Error::Sqlite(e),
                e => mls_err("processing a message")(e),
            })?;
        let sender = credential_id(processed.credential());
        Ok(match processed.into_content() {
            ProcessedMessageContent::ApplicationMessage(m) => Processed::Application {
                sender,
                plaintext: m.into_bytes(),
            },
            ProcessedMessageContent::StagedCommitMessage(staged) => {
                let added = staged
                    .add_proposals()
                    .map(|p| credential_id(p.add_proposal().key_package().leaf_node().credential()))
                    .collect();
                let removed = staged
                    .remove_proposals()
                    .filter_map(|p| group.member(p.remove_proposal().removed()))
                    .map(credential_id)
                    .collect();
                let self_removed = staged.self_removed();
                group
                    .merge_staged_commit(provider, *staged)
                    .map_err(mls_err("merging a commit"))?;
                Processed::Commit {
                    committer: sender,
                    epoch: epoch(group),
                    added,
                    removed,
                    self_removed,
                }
            }
            ProcessedMessageContent::ProposalMessage(_) => Processed::Proposal,
            ProcessedMessageContent::OwnPendingCommit => {
                group
                    .merge_pending_commit(provider)
                    .map_err(mls_err("merging a commit"))?;
                Processed::OwnCommit {
                    epoch: epoch(group),
                }
            }
            _ => Processed::Other,
        })
    })
}
