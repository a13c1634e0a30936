//! `bench load`: many workers, each making whole customers (customer → requests → activities
//! → details) through the public API: `--batch` customers at a time through the batch
//! endpoints (`POST /v1/{kind}/batch`: the customers in one request, then their requests,
//! activities and details, up to 1,000 objects a request), or one create per object with
//! `--batch 0`. The server group-commits what the workers send concurrently.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use contextd_proto::access::{KeyView, NewKey, Role};
use contextd_proto::object::{BatchRequest, BatchResult, BatchStatus, ObjectInput, MAX_BATCH};
use contextd_proto::{paths, ContextObject, Kind};
use reqwest::StatusCode;

use super::state::{BenchState, SampleCustomer};
use super::{data, http_client, server_backend, LoadArgs};

/// Most retries of one write refused with 429/503 (the server asks to slow down).
const RETRIES: u32 = 8;

struct Loader {
    http: reqwest::Client,
    url: String,
    tokens: Vec<String>,
    objects: AtomicU64,
    customers: AtomicU64,
    stop: AtomicBool,
}

impl Loader {
    /// Creates one object; returns its id.
    async fn create(
        &self,
        worker: usize,
        kind: Kind,
        body: &ObjectInput,
    ) -> anyhow::Result<String> {
        let bytes = serde_json::to_vec(body)?;
        let response = self.post(worker, &paths::objects(kind), bytes).await?;
        let created: ContextObject = response.json().await.context("bad create answer")?;
        self.objects.fetch_add(1, Ordering::Relaxed);
        Ok(created.id.to_string())
    }

    /// Creates objects of one kind through the batch endpoint, [`MAX_BATCH`] a request;
    /// returns their ids in order. Any item refused stops the load.
    async fn create_all(
        &self,
        worker: usize,
        kind: Kind,
        items: Vec<ObjectInput>,
    ) -> anyhow::Result<Vec<String>> {
        let path = paths::batch(kind);
        let mut ids = Vec::with_capacity(items.len());
        let mut items = items.into_iter().peekable();
        while items.peek().is_some() {
            let batch = BatchRequest {
                items: items.by_ref().take(MAX_BATCH).collect(),
                import: false,
            };
            let response = self
                .post(worker, &path, serde_json::to_vec(&batch)?)
                .await?;
            let result: BatchResult = response.json().await.context("bad batch answer")?;
            if let Some(failed) = result
                .items
                .iter()
                .find(|i| i.status != BatchStatus::Created)
            {
                bail!("POST {path}: an item was refused: {:?}", failed.problem);
            }
            self.objects
                .fetch_add(result.items.len() as u64, Ordering::Relaxed);
            ids.extend(
                result
                    .items
                    .into_iter()
                    .filter_map(|i| i.id.map(|id| id.to_string())),
            );
        }
        Ok(ids)
    }

    /// POSTs a JSON body, again while the server asks to slow down (429/503); returns the
    /// answer if it is a success.
    async fn post(
        &self,
        worker: usize,
        path: &str,
        bytes: Vec<u8>,
    ) -> anyhow::Result<reqwest::Response> {
        let token = &self.tokens[worker % self.tokens.len()];
        let mut attempt = 0;
        loop {
            let response = self
                .http
                .post(format!("{}{path}", self.url))
                .bearer_auth(token)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(bytes.clone())
                .send()
                .await
                .with_context(|| format!("POST {path}"))?;
            let status = response.status();
            if status.is_success() {
                return Ok(response);
            }
            let retry = matches!(
                status,
                StatusCode::TOO_MANY_REQUESTS | StatusCode::SERVICE_UNAVAILABLE
            );
            if retry && attempt < RETRIES {
                attempt += 1;
                let wait = response
                    .headers()
                    .get(reqwest::header::RETRY_AFTER)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse::<u64>().ok())
                    .map_or(Duration::from_millis(100 << attempt.min(5)), |s| {
                        Duration::from_secs(s.min(5))
                    });
                tokio::time::sleep(wait).await;
                continue;
            }
            let text = response.text().await.unwrap_or_default();
            bail!(
                "POST {path} answered {status}: {}",
                text.chars().take(300).collect::<String>()
            );
        }
    }

    /// Makes customer `n` with everything linked to it.
    async fn customer(&self, worker: usize, n: u64, args: &LoadArgs) -> anyhow::Result<Made> {
        let (body, mobile) = data::customer(n);
        let id = self.create(worker, Kind::Customer, &body).await?;
        let mut requests = Vec::new();
        for k in 0..args.requests_per_customer {
            requests.push(
                self.create(worker, Kind::Request, &data::request(&id, n, k))
                    .await?,
            );
        }
        let mut first_activity = None;
        for k in 0..args.activities_per_customer {
            let parent = data::activity_parent(k, &requests);
            let a = self
                .create(worker, Kind::Activity, &data::activity(&id, parent, n, k))
                .await?;
            first_activity.get_or_insert(a);
        }
        let first_activity = first_activity.as_deref();
        for body in (0..args.details_per_customer)
            .map_while(|d| data::detail(n, d, first_activity, &requests))
        {
            self.create(worker, Kind::Detail, &body).await?;
        }
        self.customers.fetch_add(1, Ordering::Relaxed);
        Ok(Made { id, mobile })
    }

    /// Makes customers `ns` with everything linked to them through the batch endpoints: one
    /// batch of customers, then of their requests, activities and details (each split at
    /// [`MAX_BATCH`]). The objects are the same as [`Loader::customer`] makes.
    async fn customers(
        &self,
        worker: usize,
        ns: std::ops::Range<u64>,
        args: &LoadArgs,
    ) -> anyhow::Result<Vec<Made>> {
        let (bodies, mobiles): (Vec<_>, Vec<_>) = ns.clone().map(data::customer).unzip();
        let ids = self.create_all(worker, Kind::Customer, bodies).await?;
        let customers: Vec<(u64, &String)> = ns.clone().zip(&ids).collect();
        let bodies = customers
            .iter()
            .flat_map(|&(n, id)| {
                (0..args.requests_per_customer).map(move |k| data::request(id, n, k))
            })
            .collect();
        let requests = self.create_all(worker, Kind::Request, bodies).await?;
        let per = args.requests_per_customer as usize;
        let requests_of = |c: usize| &requests[c * per..(c + 1) * per];
        let mut bodies = Vec::new();
        for (c, &(n, id)) in customers.iter().enumerate() {
            let requests = requests_of(c);
            for k in 0..args.activities_per_customer {
                bodies.push(data::activity(id, data::activity_parent(k, requests), n, k));
            }
        }
        let activities = self.create_all(worker, Kind::Activity, bodies).await?;
        let per_activity = args.activities_per_customer as usize;
        let mut bodies = Vec::new();
        for (c, &(n, _)) in customers.iter().enumerate() {
            let first_activity = activities
                .get(c * per_activity)
                .filter(|_| per_activity > 0);
            let first_activity = first_activity.map(String::as_str);
            let requests = requests_of(c);
            bodies.extend(
                (0..args.details_per_customer)
                    .map_while(|d| data::detail(n, d, first_activity, requests)),
            );
        }
        self.create_all(worker, Kind::Detail, bodies).await?;
        self.customers
            .fetch_add(ids.len() as u64, Ordering::Relaxed);
        Ok(ids
            .into_iter()
            .zip(mobiles)
            .map(|(id, mobile)| Made { id, mobile })
            .collect())
    }

    /// Makes customer `n` with a long journey (activities only) for the timeline scenario.
    async fn long_journey(&self, worker: usize, n: u64, activities: u64) -> anyhow::Result<Made> {
        let (body, mobile) = data::customer(n);
        let id = self.create(worker, Kind::Customer, &body).await?;
        for k in 0..activities {
            self.create(worker, Kind::Activity, &data::activity(&id, None, n, k))
                .await?;
        }
        self.customers.fetch_add(1, Ordering::Relaxed);
        Ok(Made { id, mobile })
    }
}

struct Made {
    id: String,
    mobile: String,
}

/// Creates a machine API key with the admin token; returns its bearer token.
async fn create_key(
    http: &reqwest::Client,
    url: &str,
    admin: &str,
    name: &str,
) -> anyhow::Result<String> {
    let response = http
        .post(format!("{url}{}", paths::KEYS))
        .bearer_auth(admin)
        .json(&NewKey {
            name: name.to_owned(),
            role: Role::Machine,
            expires_at: None,
        })
        .send()
        .await
        .context("POST /v1/keys")?;
    let status = response.status();
    if status != StatusCode::CREATED {
        bail!("POST /v1/keys answered {status}: the token must be a lab admin token");
    }
    let key: KeyView = response.json().await.context("bad /v1/keys answer")?;
    key.token.context("the new key has no token")
}

/// `bench load`.
pub async fn load(args: LoadArgs) -> anyhow::Result<()> {
    let url = args.client.url.trim_end_matches('/').to_owned();
    let admin = args
        .client
        .token
        .clone()
        .context("give a lab admin token with --token or CONTEXTD_TOKEN")?;
    let concurrency = args.concurrency.max(1);
    let http = http_client(concurrency)?;
    let backend = server_backend(&http, &url, &admin).await?;

    let mut state = match BenchState::read(&args.client.state)? {
        Some(s) if s.url == url && !s.tokens.is_empty() => {
            // Same server, but maybe a fresh database: the old keys must still work.
            if server_backend(&http, &url, &s.tokens[0]).await.is_ok() {
                s
            } else {
                eprintln!(
                    "bench: the keys in {} no longer work on {url}; starting a new state file",
                    args.client.state.display()
                );
                BenchState::default()
            }
        }
        Some(_) => {
            eprintln!(
                "bench: {} describes another server; starting a new state file",
                args.client.state.display()
            );
            BenchState::default()
        }
        None => BenchState::default(),
    };
    state.url.clone_from(&url);
    state.backend = backend;
    let stamp = chrono::Utc::now().format("%Y%m%dT%H%M%S");
    while state.tokens.len() < args.keys.max(1) {
        let name = format!("bench-{stamp}-{}", state.tokens.len());
        state
            .tokens
            .push(create_key(&http, &url, &admin, &name).await?);
    }

    let loader = Arc::new(Loader {
        http,
        url: url.clone(),
        tokens: state.tokens.clone(),
        objects: AtomicU64::new(0),
        customers: AtomicU64::new(0),
        stop: AtomicBool::new(false),
    });
    let args = Arc::new(args);
    let long_wanted = if state.timeline_len >= args.timeline_activities || state.timeline.is_empty()
    {
        args.timeline_customers
            .saturating_sub(state.timeline.len() as u64)
    } else {
        // Earlier long journeys were shorter than asked: make a whole new set.
        state.timeline.clear();
        args.timeline_customers
    };
    let first = state.next_index;
    let total = long_wanted + args.customers;
    // Reserve the numbers before making anything: an interrupted load must not leave
    // customers that a later load makes again (same number, same phones: two lookup hits).
    state.next_index = first + total;
    state.write(&args.client.state)?;
    let stride = (args.customers / args.sample.max(1)).max(1);
    // Long journeys are taken one at a time, then customers `step` at a time.
    let step = args.batch.max(1);
    let next = Arc::new(AtomicU64::new(0));
    let sample = Arc::new(Mutex::new(Vec::new()));
    let long = Arc::new(Mutex::new(Vec::new()));

    let started = Instant::now();
    let progress = tokio::spawn(progress(loader.clone(), total, started));
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency {
        let (loader, args, next, sample, long) = (
            loader.clone(),
            args.clone(),
            next.clone(),
            sample.clone(),
            long.clone(),
        );
        workers.spawn(async move {
            loop {
                if loader.stop.load(Ordering::Relaxed) {
                    return Ok(());
                }
                let taken = next.load(Ordering::Relaxed);
                let size = if taken < long_wanted { 1 } else { step };
                let i = next.fetch_add(size, Ordering::Relaxed);
                if i >= total {
                    return Ok(());
                }
                if i < long_wanted {
                    let made = loader
                        .long_journey(worker, first + i, args.timeline_activities)
                        .await?;
                    lock(&long).push(made.id);
                    continue;
                }
                let end = (i + size).min(total);
                let made = if args.batch == 0 {
                    vec![loader.customer(worker, first + i, &args).await?]
                } else {
                    loader
                        .customers(worker, first + i..first + end, &args)
                        .await?
                };
                let kept = (i..end)
                    .zip(made)
                    .filter(|(j, _)| (j - long_wanted).is_multiple_of(stride));
                lock(&sample).extend(kept.map(|(_, m)| SampleCustomer {
                    id: m.id,
                    mobile: m.mobile,
                }));
            }
        });
    }
    let mut failure: Option<anyhow::Error> = None;
    while let Some(joined) = workers.join_next().await {
        let result = joined.map_err(anyhow::Error::from).and_then(|r| r);
        if let Err(e) = result {
            loader.stop.store(true, Ordering::Relaxed);
            failure.get_or_insert(e);
        }
    }
    progress.abort();
    let elapsed = started.elapsed();
    let objects = loader.objects.load(Ordering::Relaxed);
    let customers = loader.customers.load(Ordering::Relaxed);
    eprintln!();

    // Record what was made, even after a failure: those objects exist.
    state.objects += objects;
    state.customers_total += customers;
    state.customers.extend(lock(&sample).drain(..));
    state.thin_sample(usize::try_from(args.sample).unwrap_or(usize::MAX));
    let made_long = std::mem::take(&mut *lock(&long));
    if !made_long.is_empty() {
        state.timeline_len = if state.timeline.is_empty() {
            args.timeline_activities
        } else {
            state.timeline_len.min(args.timeline_activities)
        };
        state.timeline.extend(made_long);
    }
    state.write(&args.client.state)?;
    let rate = objects as f64 / elapsed.as_secs_f64().max(1e-9);
    eprintln!(
        "bench: made {customers} customers, {objects} objects in {:.1} s ({rate:.0} objects/s); the server now holds {} objects from bench loads; state in {}",
        elapsed.as_secs_f64(),
        state.objects,
        args.client.state.display()
    );
    match failure {
        Some(e) => Err(e.context("the load stopped early")),
        None => Ok(()),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// A progress line on stderr, once a second.
async fn progress(loader: Arc<Loader>, total: u64, started: Instant) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.tick().await;
    loop {
        tick.tick().await;
        let objects = loader.objects.load(Ordering::Relaxed);
        let rate = objects as f64 / started.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\rbench: {}/{total} customers, {objects} objects, {rate:.0} objects/s   ",
            loader.customers.load(Ordering::Relaxed)
        );
    }
}
