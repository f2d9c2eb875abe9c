//! Groups: creation, metadata, members, commits (merged or staged) and joining from a welcome.

use openmls::prelude::{
    Capabilities, Extension, ExtensionType, Extensions, GroupContext, GroupId, KeyPackage,
    LeafNodeIndex, MlsGroupCreateConfig, MlsGroupJoinConfig, MlsGroupStateError, MlsMessageBodyIn,
    MlsMessageOut, RequiredCapabilitiesExtension, StagedWelcome, UnknownExtension, WelcomeError,
};
use openmls_traits::OpenMlsProvider;

use crate::storage::{atomic, atomic_on};
use crate::wire::{body_name, credential_id, deserialize, hex, parse_key_package, serialize};
use crate::{
    mls_err, Error, Identity, MlsGroup, Provider, Result, CIPHERSUITE, MAX_PAST_EPOCHS,
    METADATA_EXTENSION,
};

/// What Ferry's leaf nodes support beyond the defaults: last-resort key packages (a key
/// package carrying that extension fails validation unless its leaf lists it).
fn capabilities() -> Capabilities {
    Capabilities::builder()
        .extensions(vec![
            ExtensionType::LastResort,
            ExtensionType::Unknown(METADATA_EXTENSION),
        ])
        .build()
}

fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .build()
}

/// A new key package for `identity`, TLS-serialized as an `MLSMessage` (wire format
/// `mls_key_package`, i.e. `MlsMessageOut::from(KeyPackage)`). Its private keys are stored:
/// an ordinary key package is deleted when a welcome uses it; a `last_resort` one stays and
/// can be used by any number of welcomes.
pub fn generate_key_package(
    provider: &Provider<'_>,
    identity: &Identity,
    last_resort: bool,
) -> Result<Vec<u8>> {
    atomic(provider, || {
        let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
        if last_resort {
            builder = builder.mark_as_last_resort();
        }
        let bundle = builder
            .build(
                CIPHERSUITE,
                provider,
                &identity.keys,
                identity.credential_with_key(),
            )
            .map_err(mls_err("building a key package"))?;
        serialize(&MlsMessageOut::from(bundle.key_package().clone()))
    })
}

/// Creates the group `group_id` with `identity` as its only member (epoch 0), using
/// [`CIPHERSUITE`] and the ratchet-tree extension (welcomes carry the tree).
pub fn create_group(
    provider: &Provider<'_>,
    identity: &Identity,
    group_id: &[u8],
) -> Result<MlsGroup> {
    create_group_with_metadata(provider, identity, group_id, None)
}

/// [`create_group`] with the application's `metadata` in the [`METADATA_EXTENSION`]
/// group-context extension (read it with [`group_metadata`]).
pub fn create_group_with_metadata(
    provider: &Provider<'_>,
    identity: &Identity,
    group_id: &[u8],
    metadata: Option<&[u8]>,
) -> Result<MlsGroup> {
    let mut builder = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .capabilities(capabilities());
    if let Some(m) = metadata {
        builder = builder.with_group_context_extensions(metadata_extensions(m)?);
    }
    let config = builder.build();
    atomic(provider, || {
        MlsGroup::new_with_group_id(
            provider,
            &identity.keys,
            &config,
            GroupId::from_slice(group_id),
            identity.credential_with_key(),
        )
        .map_err(|e| match e {
            openmls::group::NewGroupError::GroupAlreadyExists => Error::GroupExists,
            openmls::group::NewGroupError::StorageError(e) => Error::Sqlite(e),
            e => mls_err("creating a group")(e),
        })
    })
}

/// The group context's extensions: the metadata, and the requirement that every member
/// support it (without which a later metadata change is refused).
fn metadata_extensions(metadata: &[u8]) -> Result<Extensions<GroupContext>> {
    Extensions::from_vec(vec![
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &[ExtensionType::Unknown(METADATA_EXTENSION)],
            &[],
            &[],
        )),
        Extension::Unknown(METADATA_EXTENSION, UnknownExtension(metadata.to_vec())),
    ])
    .map_err(mls_err("building the metadata extension"))
}

/// The bytes in the group's [`METADATA_EXTENSION`], if it has one.
pub fn group_metadata(group: &MlsGroup) -> Option<Vec<u8>> {
    group
        .extensions()
        .unknown(METADATA_EXTENSION)
        .map(|u| u.0.clone())
}

/// Replaces the group's metadata in one commit (a group-context-extensions proposal), merges
/// it and returns the commit.
pub fn update_metadata(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    metadata: &[u8],
) -> Result<Vec<u8>> {
    let out = stage_update_metadata(group, provider, identity, metadata)?;
    merge_pending_commit(group, provider)?;
    Ok(out)
}

/// [`update_metadata`] without the merge (see [`stage_add_members`]).
pub fn stage_update_metadata(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    metadata: &[u8],
) -> Result<Vec<u8>> {
    let extensions = metadata_extensions(metadata)?;
    atomic_on(group, provider, |group| {
        let (commit, _welcome, _group_info) = group
            .update_group_context_extensions(provider, extensions, &identity.keys)
            .map_err(mls_err("updating the group's metadata"))?;
        serialize(&commit)
    })
}

/// Each member's credential identity and signature public key, in leaf order.
pub fn member_keys(group: &MlsGroup) -> Vec<(Vec<u8>, Vec<u8>)> {
    group
        .members()
        .map(|m| (credential_id(&m.credential), m.signature_key))
        .collect()
}

/// Validates a key package (as [`add_members`] would) and returns its leaf's credential
/// identity and signature public key, so the caller can check them before adding it.
pub fn key_package_identity(
    provider: &Provider<'_>,
    key_package: &[u8],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let kp = parse_key_package(provider, key_package)?;
    let leaf = kp.leaf_node();
    Ok((
        credential_id(leaf.credential()),
        leaf.signature_key().as_slice().to_vec(),
    ))
}

/// The group `group_id` as stored, if this installation has it.
pub fn load_group(provider: &Provider<'_>, group_id: &[u8]) -> Result<Option<MlsGroup>> {
    Ok(MlsGroup::load(
        provider.storage(),
        &GroupId::from_slice(group_id),
    )?)
}

/// The group's current epoch.
pub fn epoch(group: &MlsGroup) -> u64 {
    group.epoch().as_u64()
}

/// The installation ids (credential identities) of the group's members, in leaf order.
pub fn members(group: &MlsGroup) -> Vec<Vec<u8>> {
    group
        .members()
        .map(|m| credential_id(&m.credential))
        .collect()
}

/// Adds the owners of `key_packages` (as made by [`generate_key_package`]) in one commit,
/// merges it, and returns `(commit, welcome)`: the commit for the current members, the
/// welcome (with the ratchet tree) for the new ones.
pub fn add_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    key_packages: &[&[u8]],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let out = stage_add_members(group, provider, identity, key_packages)?;
    merge_pending_commit(group, provider)?;
    Ok(out)
}

/// [`add_members`] without the merge: the commit stays pending (stored) until
/// [`process`] meets it in the delivery order ([`Processed::OwnCommit`]) or another member's
/// commit of the same epoch comes first (then it is dropped).
pub fn stage_add_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    key_packages: &[&[u8]],
) -> Result<(Vec<u8>, Vec<u8>)> {
    let kps = key_packages
        .iter()
        .map(|b| parse_key_package(provider, b))
        .collect::<Result<Vec<_>>>()?;
    atomic_on(group, provider, |group| {
        let (commit, welcome, _group_info) = group
            .add_members(provider, &identity.keys, &kps)
            .map_err(|e| match e {
                openmls::group::AddMembersError::GroupStateError(
                    MlsGroupStateError::UseAfterEviction,
                ) => Error::Removed,
                openmls::group::AddMembersError::StorageError(e) => Error::Sqlite(e),
                e => mls_err("adding members")(e),
            })?;
        Ok((serialize(&commit)?, serialize(&welcome)?))
    })
}

/// Merges the group's pending commit (made by a `stage_*` function).
pub fn merge_pending_commit(group: &mut MlsGroup, provider: &Provider<'_>) -> Result<()> {
    atomic_on(group, provider, |group| {
        group
            .merge_pending_commit(provider)
            .map_err(mls_err("merging a commit"))
    })
}

/// Drops the group's pending commit (one the delivery service refused).
pub fn clear_pending_commit(group: &mut MlsGroup, provider: &Provider<'_>) -> Result<()> {
    atomic_on(group, provider, |group| {
        Ok(group.clear_pending_commit(provider.storage())?)
    })
}

/// Whether the group has a commit of this installation's waiting to be confirmed.
pub fn has_pending_commit(group: &MlsGroup) -> bool {
    group.pending_commit().is_some()
}

/// Removes the members whose installation ids are `installation_ids` in one commit, merges
/// it and returns the commit.
pub fn remove_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    installation_ids: &[&[u8]],
) -> Result<Vec<u8>> {
    let out = stage_remove_members(group, provider, identity, installation_ids)?;
    merge_pending_commit(group, provider)?;
    Ok(out)
}

/// [`remove_members`] without the merge (see [`stage_add_members`]).
pub fn stage_remove_members(
    group: &mut MlsGroup,
    provider: &Provider<'_>,
    identity: &Identity,
    installation_ids: &[&[u8]],
) -> Result<Vec<u8>> {
    let mut leaves: Vec<LeafNodeIndex> = Vec::with_capacity(installation_ids.len());
    for id in installation_ids {
        let leaf = group
            .members()
            .find(|m| credential_id(&m.credential) == *id)
            .ok_or_else(|| Error::NotAMember(hex(id)))?;
        leaves.push(leaf.index);
    }
    atomic_on(group, provider, |group| {
        let (commit, _welcome, _group_info) = group
            .remove_members(provider, &identity.keys, &leaves)
            .map_err(|e| match e {
                openmls::group::RemoveMembersError::GroupStateError(
                    MlsGroupStateError::UseAfterEviction,
                ) => Error::Removed,
                openmls::group::RemoveMembersError::StorageError(e) => Error::Sqlite(e),
                e => mls_err("removing members")(e),
            })?;
        serialize(&commit)
    })
}

/// Joins a group from a welcome made by [`add_members`]. Uses up (deletes) the key package it
/// was made for, unless that one is last-resort.
pub fn join_from_welcome(provider: &Provider<'_>, welcome: &[u8]) -> Result<MlsGroup> {
    join_from_welcome_replacing(provider, welcome, |_| false)
}

/// [`join_from_welcome`]; when this installation already holds the welcome's group,
/// `replace(group_id)` decides whether its old state (say, kept after a removal) gives way to
/// the new one or the join fails with [`Error::GroupExists`].
pub fn join_from_welcome_replacing(
    provider: &Provider<'_>,
    welcome: &[u8],
    replace: impl FnOnce(&[u8]) -> bool,
) -> Result<MlsGroup> {
    let welcome = match deserialize(welcome)?.extract() {
        MlsMessageBodyIn::Welcome(w) => w,
        other => {
            return Err(Error::UnexpectedMessage {
                expected: "welcome",
                got: body_name(&other),
            })
        }
    };
    let map = |e: WelcomeError<rusqlite::Error>| match e {
        WelcomeError::NoMatchingKeyPackage | WelcomeError::JoinerSecretNotFound => {
            Error::NoMatchingKeyPackage
        }
        WelcomeError::GroupAlreadyExists => Error::GroupExists,
        WelcomeError::StorageError(e) => Error::Sqlite(e),
        e => mls_err("joining from a welcome")(e),
    };
    atomic(provider, || {
        let mut builder =
            StagedWelcome::build_from_welcome(provider, &join_config(), welcome).map_err(map)?;
        let group_id = builder
            .processed_welcome()
            .unverified_group_info()
            .group_id()
            .as_slice()
            .to_vec();
        if load_group(provider, &group_id)?.is_some() {
            if !replace(&group_id) {
                return Err(Error::GroupExists);
            }
            builder = builder.replace_old_group();
        }
        builder
            .build()
            .and_then(|staged| staged.into_group(provider))
            .map_err(map)
    })
}
