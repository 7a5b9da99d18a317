//! The leader lease and what the leader publishes in Envoy's shared data for the other
//! workers, over the [`SharedData`] trait so it runs (and is tested) without a host.

/// Envoy's shared data as the sync loop uses it: `get` returns the value and its CAS
/// token; `set` with a token writes only if the key is unchanged since (a token for a
/// key that does not exist creates it only if it still does not).
pub trait SharedData {
    fn get(&self, key: &str) -> (Option<Vec<u8>>, Option<u32>);
    /// `false`: the CAS token was stale.
    fn set(&self, key: &str, value: &[u8], cas: Option<u32>) -> bool;
}

pub const LEADER_KEY: &str = "meshauth.sync.leader";
pub const SNAPSHOT_KEY: &str = "meshauth.sync.snapshot";
/// `epoch|version` of the snapshot in SNAPSHOT_KEY, so workers re-read it only when it changed.
pub const SNAPSHOT_TAG_KEY: &str = "meshauth.sync.snapshot-tag";
/// Signed deltas received since the snapshot in SNAPSHOT_KEY, one envelope a line.
pub const DELTAS_KEY: &str = "meshauth.sync.deltas";
/// `epoch|version` in force after the snapshot and the deltas.
pub const VERSION_KEY: &str = "meshauth.sync.version";

/// The CAS token that creates a missing key only if it is still missing (Envoy accepts
/// any token for a key it does not have).
const ABSENT: u32 = u32::MAX;

/// The lease in shared data: `holder|expires_ms|generation`. The generation grows by one
/// each time the lease changes hands, and fences what leaders publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub holder: String,
    pub expires_ms: u64,
    pub generation: u64,
}

impl Lease {
    pub fn parse(bytes: &[u8]) -> Option<Lease> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut parts = text.rsplitn(3, '|');
        let generation = parts.next()?.parse().ok()?;
        let expires_ms = parts.next()?.parse().ok()?;
        let holder = parts.next()?.to_string();
        if holder.contains('|') {
            return None;
        }
        Some(Lease {
            holder,
            expires_ms,
            generation,
        })
    }

    pub fn encode(&self) -> String {
        format!("{}|{}|{}", self.holder, self.expires_ms, self.generation)
    }
}

/// Takes the lease (when free or expired) or renews it (when `me` holds it). `Some(gen)`:
/// `me` leads, at that generation.
pub fn acquire_lease(shared: &dyn SharedData, me: &str, now_ms: u64, lease_ms: u64) -> Option<u64> {
    let (current, cas) = shared.get(LEADER_KEY);
    let current = current.as_deref().and_then(Lease::parse);
    let generation = match &current {
        Some(l) if l.holder == me => l.generation,
        Some(l) if l.expires_ms > now_ms => return None,
        Some(l) => l.generation.saturating_add(1),
        None => 1,
    };
    let lease = Lease {
        holder: me.to_string(),
        expires_ms: now_ms.saturating_add(lease_ms),
        generation,
    };
    shared
        .set(
            LEADER_KEY,
            lease.encode().as_bytes(),
            Some(cas.unwrap_or(ABSENT)),
        )
        .then_some(generation)
}

/// What a leader publishes for the other workers after applying a sync answer.
#[derive(Debug, Clone, Copy)]
pub enum Publication<'a> {
    /// A full snapshot now at `tag` (`epoch|version`): replaces the snapshot, empties
    /// the delta list.
    Full { body: &'a [u8], tag: &'a str },
    /// A delta from `base` to `tag`, appended to the list.
    Delta {
        body: &'a [u8],
        base: &'a str,
        tag: &'a str,
    },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PublishError {
    /// `me` no longer holds the lease at `generation`, or a later leader has written.
    Fenced,
    /// The delta does not start from the version published (another leader moved on).
    WrongBase,
    /// A concurrent write kept winning.
    Contended,
}

/// Every published value starts with `generation\n`: a write is refused where a later
/// generation has written, so a leader that stalled past its lease and wakes up cannot
/// overwrite what its successor published.
fn fenced(generation: u64, payload: &[u8]) -> Vec<u8> {
    let mut v = format!("{generation}\n").into_bytes();
    v.extend_from_slice(payload);
    v
}

fn split_fenced(value: &[u8]) -> Option<(u64, &[u8])> {
    let nl = value.iter().position(|b| *b == b'\n')?;
    let generation = std::str::from_utf8(value.get(..nl)?).ok()?.parse().ok()?;
    Some((generation, value.get(nl + 1..)?))
}

/// The payload of a published key (what workers read), without its generation.
pub fn read_published(shared: &dyn SharedData, key: &str) -> Option<Vec<u8>> {
    let (value, _) = shared.get(key);
    value.and_then(|v| split_fenced(&v).map(|(_, p)| p.to_vec()))
}

/// Builds a key's new payload from its current one.
type Edit<'a> = dyn Fn(Option<&[u8]>) -> Result<Vec<u8>, PublishError> + 'a;

/// Writes `payload` to `key` unless a later generation wrote there (CAS, a few tries).
/// `edit` builds the new payload from the current one.
fn fenced_write(
    shared: &dyn SharedData,
    key: &str,
    generation: u64,
    edit: &Edit<'_>,
) -> Result<(), PublishError> {
    for _ in 0..4 {
        let (value, cas) = shared.get(key);
        let current = value.as_deref().and_then(split_fenced);
        if current.is_some_and(|(g, _)| g > generation) {
            return Err(PublishError::Fenced);
        }
        let payload = edit(current.map(|(_, p)| p))?;
        if shared.set(
            key,
            &fenced(generation, &payload),
            Some(cas.unwrap_or(ABSENT)),
        ) {
            return Ok(());
        }
    }
    Err(PublishError::Contended)
}

/// Publishes a sync answer the leader applied, fenced by its lease: refused unless `me`
/// still holds the lease at `generation` and no later leader has written. The version
/// key is written last, so workers never see a version before what it covers.
pub fn publish(
    shared: &dyn SharedData,
    me: &str,
    generation: u64,
    now_ms: u64,
    what: Publication<'_>,
) -> Result<(), PublishError> {
    let holds = shared
        .get(LEADER_KEY)
        .0
        .as_deref()
        .and_then(Lease::parse)
        .is_some_and(|l| l.holder == me && l.generation == generation && l.expires_ms > now_ms);
    // Every publication ends with the version key, so a later leader's mark is there
    // (or on the others) before anything of this one is written.
    let later = [VERSION_KEY, SNAPSHOT_KEY, DELTAS_KEY, SNAPSHOT_TAG_KEY]
        .iter()
        .any(|k| {
            shared
                .get(k)
                .0
                .as_deref()
                .and_then(split_fenced)
                .is_some_and(|(g, _)| g > generation)
        });
    if !holds || later {
        return Err(PublishError::Fenced);
    }
    let tag = match what {
        Publication::Full { body, tag } => {
            fenced_write(shared, SNAPSHOT_KEY, generation, &|_| Ok(body.to_vec()))?;
            fenced_write(shared, DELTAS_KEY, generation, &|_| Ok(Vec::new()))?;
            fenced_write(shared, SNAPSHOT_TAG_KEY, generation, &|_| {
                Ok(tag.as_bytes().to_vec())
            })?;
            tag
        }
        Publication::Delta { body, base, tag } => {
            if read_published(shared, VERSION_KEY).as_deref() != Some(base.as_bytes()) {
                return Err(PublishError::WrongBase);
            }
            fenced_write(shared, DELTAS_KEY, generation, &|held| {
                let mut list = held.unwrap_or_default().to_vec();
                list.extend_from_slice(body);
                list.push(b'\n');
                Ok(list)
            })?;
            tag
        }
    };
    fenced_write(shared, VERSION_KEY, generation, &|_| {
        Ok(tag.as_bytes().to_vec())
    })
}
