//! Streams for JS: `next()` resolves with the next item, or with `null` once the stream has
//! ended (`end()`, the client closed, or the SDK's stream finished). The TypeScript layer makes
//! them async iterators.

use futures::stream::BoxStream;
use futures::StreamExt;
use napi_derive::napi;
use tokio::sync::{watch, Mutex};

use crate::conversation::Conversation;
use crate::types::{consent_to_js, message_to_js, ConsentRecord, Message};

/// One SDK stream, ended at most once.
pub(crate) struct Pump<T> {
    inner: Mutex<Option<BoxStream<'static, T>>>,
    ended: watch::Sender<bool>,
}

impl<T: Send + 'static> Pump<T> {
    pub(crate) fn new(s: impl futures::Stream<Item = T> + Send + 'static) -> Self {
        Pump {
            inner: Mutex::new(Some(s.boxed())),
            ended: watch::channel(false).0,
        }
    }

    async fn next(&self) -> Option<T> {
        let mut ended = self.ended.subscribe();
        let mut guard = self.inner.lock().await;
        let stream = guard.as_mut()?;
        tokio::select! {
            item = stream.next() => {
                if item.is_none() {
                    *guard = None;
                }
                item
            }
            _ = ended.wait_for(|e| *e) => {
                *guard = None;
                None
            }
        }
    }

    fn end(&self) {
        self.ended.send_replace(true);
        // Drop the SDK's stream now unless a `next()` holds it: that one drops it as it ends.
        if let Ok(mut g) = self.inner.try_lock() {
            *g = None;
        }
    }
}

/// Messages as they are stored (sent here, received, or from another installation).
#[napi]
pub struct MessageStream {
    pub(crate) pump: Pump<ferry_sdk::store::Message>,
}

#[napi]
impl MessageStream {
    /// The next message, or `null` once the stream has ended.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Message>> {
        Ok(self.pump.next().await.map(|m| message_to_js(&m)))
    }

    /// Ends the stream: a pending `next()` resolves with `null`.
    #[napi]
    pub fn end(&self) {
        self.pump.end()
    }
}

/// New conversations (created here or joined).
#[napi]
pub struct ConversationStream {
    pub(crate) pump: Pump<ferry_sdk::Conversation>,
}

#[napi]
impl ConversationStream {
    /// The next conversation, or `null` once the stream has ended.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<Conversation>> {
        Ok(self.pump.next().await.map(|c| Conversation { inner: c }))
    }

    /// Ends the stream: a pending `next()` resolves with `null`.
    #[napi]
    pub fn end(&self) {
        self.pump.end()
    }
}

/// Consent decisions as they change (here or on another installation of the inbox).
#[napi]
pub struct ConsentStream {
    pub(crate) pump: Pump<ferry_sdk::ConsentRecord>,
}

#[napi]
impl ConsentStream {
    /// The next consent record, or `null` once the stream has ended.
    #[napi]
    pub async fn next(&self) -> napi::Result<Option<ConsentRecord>> {
        Ok(self.pump.next().await.map(|c| consent_to_js(&c)))
    }

    /// Ends the stream: a pending `next()` resolves with `null`.
    #[napi]
    pub fn end(&self) {
        self.pump.end()
    }
}
