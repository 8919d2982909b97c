//! `atelier serve`: the HTTP server until Ctrl-C or SIGTERM.

use anyhow::Context;

use crate::cli::ServeArgs;
use crate::settings::Settings;

pub async fn run(settings: &Settings, args: ServeArgs) -> anyhow::Result<()> {
    let addr = args.addr.as_deref().unwrap_or(&settings.server.addr);
    let addr: std::net::SocketAddr = addr
        .parse()
        .with_context(|| format!("`--addr {addr}` is not IP:PORT, e.g. 127.0.0.1:8080"))?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .with_context(|| format!("cannot listen on {addr}"))?;
    let local = listener.local_addr()?;
    eprintln!("loading models…");
    let services = crate::server::Services::load(settings).await?;
    // Tools (tests, `bench ws`) read this line to learn the port.
    println!("listening on http://{local}");
    crate::server::serve(
        std::sync::Arc::new(services),
        settings.server.clone(),
        listener,
        shutdown_signal(),
    )
    .await?;
    eprintln!("stopped");
    Ok(())
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
