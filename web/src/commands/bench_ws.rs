//! `atelier bench ws`: how many idle WebSocket sessions one server holds and at what memory,
//! and the ping round trip of active connections with and without them.
//!
//! The server is this binary (`atelier serve`) started for the run on 127.0.0.1 port 0 with the
//! configured models, so its RSS is measured apart from the load generator's. The run raises the
//! open-file limit, opens `--sessions` sessions with one connection each, pings from
//! `--active` other connections for `--seconds` (before and after the idle ones are opened:
//! the reference in the same run), checks that one connection past capacity gets 429 with
//! Retry-After, then stops the server.

use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::{SinkExt, StreamExt};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::cli::BenchWsArgs;

use super::bench::{percentile, publish};

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

fn rss_kb(pid: u32) -> anyhow::Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("reading /proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .context("no VmRSS in /proc/PID/status")
}

async fn new_session(http: &reqwest::Client, addr: &str) -> anyhow::Result<String> {
    let r = http
        .post(format!("http://{addr}/v1/sessions"))
        .json(&serde_json::json!({}))
        .send()
        .await?;
    let status = r.status();
    let body: serde_json::Value = r.json().await?;
    anyhow::ensure!(status == 201, "POST /v1/sessions answered {status}: {body}");
    body["id"]
        .as_str()
        .map(str::to_string)
        .context("no session id")
}

async fn connect(addr: &str, session: &str) -> anyhow::Result<Ws> {
    let config = WebSocketConfig::default()
        .read_buffer_size(4096)
        .write_buffer_size(0);
    let (mut ws, _) = tokio_tungstenite::connect_async_with_config(
        format!("ws://{addr}/v1/sessions/{session}/ws"),
        Some(config),
        false,
    )
    .await?;
    // The welcome.
    match tokio::time::timeout(Duration::from_secs(30), ws.next()).await {
        Ok(Some(Ok(Message::Text(_)))) => Ok(ws),
        other => bail!("no welcome: {other:?}"),
    }
}

/// Ping from `conns` at `rate` per second each for `seconds`; round trips in milliseconds.
async fn ping_load(conns: Vec<Ws>, rate: u32, seconds: u64) -> anyhow::Result<(Vec<f64>, Vec<Ws>)> {
    let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
    let end = Instant::now() + Duration::from_secs(seconds);
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|mut ws| {
            tokio::spawn(async move {
                let mut rtts = Vec::new();
                let mut tick = tokio::time::interval(period);
                while Instant::now() < end {
                    tick.tick().await;
                    let t = Instant::now();
                    ws.send(Message::text(r#"{"type":"ping","nonce":"b"}"#))
                        .await?;
                    loop {
                        match tokio::time::timeout(Duration::from_secs(10), ws.next()).await {
                            Ok(Some(Ok(Message::Text(m)))) if m.contains("\"pong\"") => break,
                            Ok(Some(Ok(_))) => continue,
                            other => bail!("no pong: {other:?}"),
                        }
                    }
                    rtts.push(t.elapsed().as_secs_f64() * 1e3);
                }
                Ok::<_, anyhow::Error>((rtts, ws))
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut back = Vec::new();
    for t in tasks {
        let (rtts, ws) = t.await??;
        all.extend(rtts);
        back.push(ws);
    }
    Ok((all, back))
}

pub async fn run(args: BenchWsArgs) -> anyhow::Result<()> {
    anyhow::ensure!(
        (1..=100_000).contains(&args.sessions),
        "--sessions must be 1..=100000"
    );
    anyhow::ensure!(
        (1..=1000).contains(&args.active),
        "--active must be 1..=1000"
    );
    anyhow::ensure!((1..=100).contains(&args.rate), "--rate must be 1..=100");
    anyhow::ensure!(
        (1..=600).contains(&args.seconds),
        "--seconds must be 1..=600"
    );
    // Each process (this one and the server, which inherits the limit) holds one socket per
    // connection, plus files and transient HTTP connections.
    let need = (args.sessions + args.active) as u64 + 1024;
    let limit = rlimit::increase_nofile_limit(need).context("raising the open-file limit")?;
    anyhow::ensure!(
        limit >= need,
        "the open-file limit is {limit}; this run needs {need} (raise the hard limit, or use fewer --sessions)"
    );
    let capacity = args.sessions + args.active;
    let exe = std::env::current_exe()?;
    let mut child = tokio::process::Command::new(exe)
        .args(["serve", "--addr", "127.0.0.1:0"])
        .env("ATELIER__SERVER__MAX_CONNECTIONS", capacity.to_string())
        .env("ATELIER__SERVER__MAX_SESSIONS", (capacity + 1).to_string())
        .env("ATELIER__SERVER__IDLE_TIMEOUT_SECONDS", "3600")
        .env("ATELIER__SERVER__MESSAGES_PER_SECOND", "1000")
        .env("ATELIER__SERVER__MESSAGE_BURST", "1000")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .context("starting `atelier serve`")?;
    let pid = child.id().context("the server exited at once")?;
    let stdout = child.stdout.take().context("no server stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let addr = tokio::time::timeout(Duration::from_secs(600), async {
        while let Some(line) = lines.next_line().await? {
            if let Some(url) = line.strip_prefix("listening on http://") {
                return Ok(url.trim().to_string());
            }
        }
        bail!("the server exited before listening")
    })
    .await
    .context("the server did not start within 600 s")??;
    eprintln!("server pid {pid} on {addr}");

    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    // Reference: pings with no idle sessions.
    let mut active = Vec::new();
    for _ in 0..args.active {
        let s = new_session(&http, &addr).await?;
        active.push(connect(&addr, &s).await?);
    }
    let (quiet, active) = ping_load(active, args.rate, args.seconds).await?;
    let rss_before = rss_kb(pid)?;

    eprintln!("opening {} idle sessions…", args.sessions);
    let started = Instant::now();
    let idle: Vec<Ws> = futures::stream::iter(0..args.sessions)
        .map(|_| {
            let (addr, http) = (addr.clone(), http.clone());
            async move {
                let s = new_session(&http, &addr).await?;
                connect(&addr, &s).await
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<_>>()?;
    let open_s = started.elapsed().as_secs_f64();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let rss_idle = rss_kb(pid)?;
    let (loaded, active) = ping_load(active, args.rate, args.seconds).await?;
    let rss_after = rss_kb(pid)?;

    // One past capacity.
    let session = new_session(&http, &addr).await?;
    let past = http
        .get(format!("http://{addr}/v1/sessions/{session}/ws"))
        .header("connection", "upgrade")
        .header("upgrade", "websocket")
        .header("sec-websocket-version", "13")
        .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
        .send()
        .await?;
    let status = past.status().as_u16();
    let retry_after = past
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    drop(idle);
    drop(active);
    let _ = child.start_kill();
    let _ = child.wait().await;

    let held_mb = (rss_idle.saturating_sub(rss_before)) as f64 / 1024.0;
    let per_session_kb = (rss_idle.saturating_sub(rss_before)) as f64 / args.sessions as f64;
    let projected_10k_mb = per_session_kb * 10_000.0 / 1024.0;
    let table = format!(
        "\n### WebSocket sessions ({}, loopback, server = `atelier serve` with the default models)\n\n\
         | measure | value | goal |\n|---|---|---|\n\
         | idle sessions held (one connection each) | {} (opened in {:.1} s) | 10,000 |\n\
         | server RSS: models loaded / with the idle sessions / after the pings | {:.0} / {:.0} / {:.0} MB | — |\n\
         | RSS held by the idle sessions | {:.0} MB ({:.1} KB each; 10,000 → {:.0} MB) | < 1 GB for 10,000 |\n\
         | ping round trip, {} connections × {}/s, no idle sessions: p50 / p99 | {:.2} / {:.2} ms | reference |\n\
         | the same with the idle sessions: p50 / p99 | {:.2} / {:.2} ms ({:.2}× the reference p99) | — |\n\
         | one connection past capacity | HTTP {} {} | 429 + Retry-After |\n",
        chrono::Utc::now().format("%Y-%m-%d"),
        args.sessions,
        open_s,
        rss_before as f64 / 1024.0,
        rss_idle as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        held_mb,
        per_session_kb,
        projected_10k_mb,
        args.active,
        args.rate,
        percentile(quiet.clone(), 0.5),
        percentile(quiet.clone(), 0.99),
        percentile(loaded.clone(), 0.5),
        percentile(loaded.clone(), 0.99),
        percentile(loaded, 0.99) / percentile(quiet, 0.99).max(1e-9),
        status,
        retry_after
            .map(|r| format!("Retry-After: {r}"))
            .unwrap_or_else(|| "without Retry-After".into()),
    );
    publish(&table, args.markdown.as_deref())?;
    anyhow::ensure!(
        status == 429,
        "past capacity the server answered {status}, not 429"
    );
    Ok(())
}
