//! The one output layer: every file a command writes goes through an
//! [`Outputs`] transaction.
//!
//! - Each output is staged as a temporary file in its target's directory,
//!   named `.memkin-partial-<pid>.<host>-<name>` (`<host>`: 8 hex digits of the
//!   host name's sha256), so it keeps the target's extension and can be
//!   recognised later.
//! - [`Outputs::commit`] renames every staged file into place only after all of
//!   them were written and synced; when a rename fails, the renames already
//!   done are rolled back (the previous files are kept as hard links until the
//!   commit is over). Dropping an uncommitted transaction (an error, a panic
//!   that unwinds) removes the temporaries and the directories it created.
//! - A kill leaves temporaries behind; the next transaction staging in that
//!   directory removes those of processes of this host that are gone (and those
//!   of other hosts older than a day, which cannot be checked).
//! - A target is refused (exit 2, nothing written) when it is a directory, not a
//!   regular file (a device, FIFO, socket), a dangling symbolic link, the same
//!   file as a declared input of the command (compared by device and inode, so
//!   hard links, symbolic links and `./x` spellings are all caught), or the same
//!   file as another output of the command. A symbolic link to a regular file
//!   is written through: the file it names is replaced, the link kept.
//!
//! Commands declare their inputs ([`Outputs::input`]) and their targets
//! ([`Outputs::plan`]) before the work, so a bad path is refused before any
//! computing; staging re-checks.

use crate::{Error, Result};
use sha2::{Digest, Sha256};
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, SystemTime};

/// The prefix of every temporary file memkin writes.
pub const PARTIAL_PREFIX: &str = ".memkin-partial-";

/// How old a temporary of another host must be before it counts as stale.
const FOREIGN_STALE: Duration = Duration::from_secs(24 * 3600);

/// (device, inode): the identity of a file, whatever its spelling.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileKey {
    dev: u64,
    ino: u64,
}

impl FileKey {
    fn of(m: &std::fs::Metadata) -> Self {
        Self {
            dev: m.dev(),
            ino: m.ino(),
        }
    }
}

#[derive(Debug)]
struct Input {
    shown: PathBuf,
    key: FileKey,
}

#[derive(Debug)]
struct Target {
    /// The path as the user gave it (for messages).
    shown: PathBuf,
    /// Where the file really goes (symbolic links resolved).
    resolved: PathBuf,
    /// The staged temporary, once created.
    tmp: Option<PathBuf>,
}

/// A set of output files that appear together or not at all (see the module
/// docs).
#[derive(Debug, Default)]
pub struct Outputs {
    inputs: Vec<Input>,
    targets: Vec<Target>,
    /// Directories this transaction created, outermost first.
    created_dirs: Vec<PathBuf>,
    /// Directories already swept of stale temporaries.
    swept: Vec<PathBuf>,
    committed: bool,
}

/// `8 hex digits` of the host name's sha256 (empty host: `00000000`).
fn host_tag() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let d = Sha256::digest(host.trim().as_bytes());
    format!("{:02x}{:02x}{:02x}{:02x}", d[0], d[1], d[2], d[3])
}

/// The temporary name of `name` for this process.
fn temp_file_name(name: &str) -> String {
    format!(
        "{PARTIAL_PREFIX}{}.{}-{name}",
        std::process::id(),
        host_tag()
    )
}

fn backup_file_name(name: &str) -> String {
    format!(
        "{PARTIAL_PREFIX}{}.{}-backup-{name}",
        std::process::id(),
        host_tag()
    )
}

/// True when process `pid` of this host still runs (false when unknown: no
/// `/proc`, then only age decides).
fn pid_alive(pid: u32) -> Option<bool> {
    if !Path::new("/proc/self").exists() {
        return None;
    }
    Some(Path::new(&format!("/proc/{pid}")).exists())
}

/// Whether a directory entry named `name` is a stale temporary of a memkin
/// process that no longer runs. Also recognises the `.NAME.partial-PID` names
/// of earlier memkin versions.
fn is_stale(name: &str, path: &Path, host: &str) -> bool {
    let old = |p: &Path| {
        std::fs::symlink_metadata(p)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| SystemTime::now().duration_since(t).ok())
            .is_some_and(|age| age > FOREIGN_STALE)
    };
    let me = std::process::id();
    if let Some(rest) = name.strip_prefix(PARTIAL_PREFIX) {
        let Some((id, _)) = rest.split_once('-') else {
            return false;
        };
        let Some((pid, tag)) = id.split_once('.') else {
            return false;
        };
        let Ok(pid) = pid.parse::<u32>() else {
            return false;
        };
        if tag != host {
            return old(path);
        }
        if pid == me {
            return false;
        }
        return match pid_alive(pid) {
            Some(alive) => !alive,
            None => old(path),
        };
    }
    // Earlier versions: `.NAME.partial-PID` (and `.NAME.partial-PID.EXT`).
    if name.starts_with('.')
        && let Some(pos) = name.rfind(".partial-")
    {
        let digits: String = name[pos + 9..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect();
        if let Ok(pid) = digits.parse::<u32>() {
            if pid == me {
                return false;
            }
            return match pid_alive(pid) {
                Some(alive) => !alive,
                None => old(path),
            };
        }
    }
    false
}

/// Removes the stale temporaries (see [`Outputs`]) in `dir`; returns how many.
pub fn remove_stale_partials(dir: &Path) -> usize {
    let host = host_tag();
    let mut n = 0;
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let path = e.path();
            let is_file = e.file_type().is_ok_and(|t| t.is_file());
            if is_file && is_stale(&name, &path, &host) && std::fs::remove_file(&path).is_ok() {
                n += 1;
            }
        }
    }
    n
}

fn path_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Path {
        path: path.to_path_buf(),
        message: message.into(),
    }
}

/// `path` made absolute and free of `.`/`..` and symbolic links as far as it
/// exists (the missing tail is appended as spelled).
fn resolve_lexically(path: &Path) -> PathBuf {
    let abs = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map(|d| d.join(path))
            .unwrap_or_else(|_| path.to_path_buf())
    };
    // Longest existing ancestor, canonicalised; the rest appended.
    let mut existing = abs.as_path();
    let mut tail: Vec<&std::ffi::OsStr> = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in tail.iter().rev() {
                if *part == ".." {
                    out.pop();
                } else if *part != "." {
                    out.push(part);
                }
            }
            return out;
        }
        match (existing.parent(), existing.file_name()) {
            (Some(p), Some(n)) => {
                tail.push(n);
                existing = p;
            }
            _ => return abs,
        }
    }
}

impl Outputs {
    /// An empty transaction.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares an input of the command: no output may be this file. A path
    /// that does not exist is ignored (reading it will report it).
    pub fn input(&mut self, path: &Path) -> &mut Self {
        if let Ok(m) = std::fs::metadata(path) {
            self.inputs.push(Input {
                shown: path.to_path_buf(),
                key: FileKey::of(&m),
            });
        }
        self
    }

    /// Declares an input directory: no output may be any file under it (e.g. a
    /// dataset directory).
    pub fn input_tree(&mut self, dir: &Path) -> &mut Self {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                let p = e.path();
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    self.input_tree(&p);
                } else {
                    self.input(&p);
                }
            }
        }
        self
    }

    /// Declares every file `files` lists as an input (e.g. a dataset's).
    pub fn inputs<'p>(&mut self, files: impl IntoIterator<Item = &'p PathBuf>) -> &mut Self {
        for f in files {
            self.input(f);
        }
        self
    }

    /// Checks the directory a command writes into (`flag` names it, e.g.
    /// `--out`) and plans `names` in it, before the work: the directory must
    /// be a directory (or not exist yet, under a directory) that can be
    /// written; each file is checked as [`Outputs::plan`] does.
    pub fn plan_in_dir(&mut self, flag: &str, dir: &Path, names: &[&str]) -> Result<()> {
        check_output_dir(flag, dir)?;
        for n in names {
            self.plan(&dir.join(n))?;
        }
        Ok(())
    }

    /// Checks a target and reserves it, before the work: see the module docs
    /// for what is refused (planning one file twice is). Staging a planned
    /// target later is allowed (once).
    pub fn plan(&mut self, target: &Path) -> Result<()> {
        let resolved = self.check_target(target)?;
        if let Some(o) = self.targets.iter().find(|t| t.resolved == resolved) {
            let same = alias(&o.shown, target);
            return Err(path_error(
                target,
                format!(
                    "is also another output of this command{same}: give each output its own path"
                ),
            ));
        }
        self.targets.push(Target {
            shown: target.to_path_buf(),
            resolved,
            tmp: None,
        });
        Ok(())
    }

    /// Where `target` really goes, or why it cannot be written.
    fn check_target(&self, target: &Path) -> Result<PathBuf> {
        let spelled = target.as_os_str().to_string_lossy();
        if spelled.is_empty() {
            return Err(path_error(target, "empty path: expected a file path"));
        }
        if spelled.ends_with('/')
            || matches!(
                target.components().next_back(),
                Some(Component::CurDir | Component::ParentDir | Component::RootDir)
            )
        {
            return Err(path_error(
                target,
                "names a directory: expected a file path",
            ));
        }
        let resolved = match std::fs::symlink_metadata(target) {
            Ok(m) if m.file_type().is_symlink() => match target.canonicalize() {
                Ok(c) => c,
                Err(_) => {
                    return Err(path_error(
                        target,
                        "is a dangling symbolic link: remove it or give another path",
                    ));
                }
            },
            Ok(_) => resolve_lexically(target),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) =>
            {
                resolve_lexically(target)
            }
            Err(e) => return Err(path_error(target, format!("cannot be examined: {e}"))),
        };
        match std::fs::metadata(&resolved) {
            Ok(m) if m.is_dir() => {
                return Err(path_error(target, "is a directory: expected a file path"));
            }
            Ok(m) if !m.is_file() => {
                return Err(path_error(
                    target,
                    "is not a regular file (a device, FIFO or socket): memkin only replaces regular files",
                ));
            }
            Ok(m) => {
                let key = FileKey::of(&m);
                if let Some(i) = self.inputs.iter().find(|i| i.key == key) {
                    let same = alias(&i.shown, target);
                    return Err(path_error(
                        target,
                        format!(
                            "is an input of this command{same}: refusing to overwrite it; give another output path"
                        ),
                    ));
                }
            }
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(e) => return Err(path_error(target, format!("cannot be examined: {e}"))),
        }
        // An ancestor that exists must be a directory.
        let mut anc = resolved.parent();
        while let Some(a) = anc {
            match std::fs::metadata(a) {
                Ok(m) if m.is_dir() => break,
                Ok(_) => {
                    return Err(path_error(
                        target,
                        format!("{} is not a directory", a.display()),
                    ));
                }
                Err(_) => anc = a.parent(),
            }
        }
        Ok(resolved)
    }

    fn check_not_other_output(&self, target: &Path, resolved: &Path) -> Result<()> {
        if let Some(o) = self
            .targets
            .iter()
            .find(|t| t.resolved == resolved && t.tmp.is_some())
        {
            let same = alias(&o.shown, target);
            return Err(path_error(
                target,
                format!(
                    "is also another output of this command{same}: give each output its own path"
                ),
            ));
        }
        Ok(())
    }

    fn ensure_dir(&mut self, target: &Path, dir: &Path) -> Result<()> {
        let mut missing = Vec::new();
        let mut d = Some(dir);
        while let Some(x) = d {
            if x.as_os_str().is_empty() || x.is_dir() {
                break;
            }
            missing.push(x.to_path_buf());
            d = x.parent();
        }
        for x in missing.into_iter().rev() {
            match std::fs::create_dir(&x) {
                Ok(()) => self.created_dirs.push(x),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && x.is_dir() => {}
                Err(e) => {
                    return Err(path_error(
                        target,
                        format!("cannot create directory {}: {e}", x.display()),
                    ));
                }
            }
        }
        if !self.swept.iter().any(|s| s == dir) {
            remove_stale_partials(dir);
            self.swept.push(dir.to_path_buf());
        }
        Ok(())
    }

    /// Checks `target`, creates its directory and the temporary, and returns
    /// the temporary's path (the file exists, empty).
    fn stage(&mut self, target: &Path) -> Result<PathBuf> {
        let resolved = self.check_target(target)?;
        self.check_not_other_output(target, &resolved)?;
        let dir = resolved
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        self.ensure_dir(target, &dir)?;
        let name = resolved
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let tmp = dir.join(temp_file_name(&name));
        File::create(&tmp)
            .map_err(|e| path_error(target, format!("cannot write in {}: {e}", dir.display())))?;
        match self.targets.iter_mut().find(|t| t.resolved == resolved) {
            Some(t) => t.tmp = Some(tmp.clone()),
            None => self.targets.push(Target {
                shown: target.to_path_buf(),
                resolved,
                tmp: Some(tmp.clone()),
            }),
        }
        Ok(tmp)
    }

    /// Stages a file through a writer (`write` gets a buffered writer on the
    /// temporary; it is flushed and synced here).
    pub fn write_with(
        &mut self,
        target: &Path,
        write: impl FnOnce(&mut BufWriter<File>) -> Result<()>,
    ) -> Result<()> {
        let tmp = self.stage(target)?;
        let f = File::options()
            .write(true)
            .open(&tmp)
            .map_err(|e| Error::io(target, e))?;
        let mut w = BufWriter::new(f);
        write(&mut w)?;
        let f = w
            .into_inner()
            .map_err(|e| Error::io(target, e.into_error()))?;
        f.sync_all().map_err(|e| Error::io(target, e))
    }

    /// Stages raw bytes.
    pub fn bytes(&mut self, target: &Path, contents: &[u8]) -> Result<()> {
        self.write_with(target, |w| {
            w.write_all(contents).map_err(|e| Error::io(target, e))
        })
    }

    /// Stages a text file (JSON, CSV).
    pub fn text(&mut self, target: &Path, contents: &str) -> Result<()> {
        self.bytes(target, contents.as_bytes())
    }

    /// Stages an array `.npy` of any ndarray-npy element type.
    pub fn npy<T: ndarray_npy::WritableElement>(
        &mut self,
        target: &Path,
        data: Vec<T>,
        shape: &[usize],
    ) -> Result<()> {
        use ndarray_npy::WriteNpyExt;
        let arr = ndarray::ArrayD::from_shape_vec(ndarray::IxDyn(shape), data)
            .map_err(|e| Error::Internal(format!("npy shape: {e}")))?;
        self.write_with(target, |w| {
            arr.write_npy(w).map_err(|e| match e {
                ndarray_npy::WriteNpyError::Io(e) => Error::io(target, e),
                other => Error::Internal(format!("{}: {other}", target.display())),
            })
        })
    }

    /// Stages a file that `write` creates at the temporary path it is given
    /// (e.g. a PNG plot; the temporary keeps the target's extension).
    pub fn with_path(
        &mut self,
        target: &Path,
        write: impl FnOnce(&Path) -> Result<()>,
    ) -> Result<()> {
        let tmp = self.stage(target)?;
        write(&tmp)?;
        let f = File::open(&tmp).map_err(|e| Error::io(target, e))?;
        f.sync_all().map_err(|e| Error::io(target, e))
    }

    /// The targets staged so far, as the user spelled them.
    pub fn staged(&self) -> Vec<PathBuf> {
        self.targets
            .iter()
            .filter(|t| t.tmp.is_some())
            .map(|t| t.shown.clone())
            .collect()
    }

    /// Renames every staged file to its target, all or none: targets are
    /// checked again first, and a failed rename rolls back the ones done.
    /// Planned targets that were never staged are left alone.
    pub fn commit(mut self) -> Result<()> {
        let staged: Vec<(PathBuf, PathBuf, PathBuf)> = self
            .targets
            .iter()
            .filter_map(|t| {
                t.tmp
                    .clone()
                    .map(|tmp| (t.shown.clone(), t.resolved.clone(), tmp))
            })
            .collect();
        for (shown, _, _) in &staged {
            self.check_target(shown)?;
        }
        // Keep the previous files until every rename succeeded.
        let mut done: Vec<(PathBuf, Option<PathBuf>)> = Vec::new();
        let mut failure = None;
        for (shown, resolved, tmp) in &staged {
            let backup = resolved.is_file().then(|| {
                let name = resolved
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                resolved.with_file_name(backup_file_name(&name))
            });
            let backup = backup.filter(|b| {
                let _ = std::fs::remove_file(b);
                std::fs::hard_link(resolved, b).is_ok()
            });
            match std::fs::rename(tmp, resolved) {
                Ok(()) => done.push((resolved.clone(), backup)),
                Err(e) => {
                    if let Some(b) = backup {
                        let _ = std::fs::remove_file(b);
                    }
                    failure = Some(Error::io(shown, e));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            for (target, backup) in done.into_iter().rev() {
                match backup {
                    Some(b) => {
                        let _ = std::fs::rename(&b, &target);
                    }
                    None => {
                        let _ = std::fs::remove_file(&target);
                    }
                }
            }
            return Err(e);
        }
        for (_, backup) in &done {
            if let Some(b) = backup {
                let _ = std::fs::remove_file(b);
            }
        }
        let mut dirs: Vec<PathBuf> = staged
            .iter()
            .filter_map(|(_, r, _)| r.parent().map(Path::to_path_buf))
            .collect();
        dirs.dedup();
        for d in dirs {
            if let Ok(f) = File::open(&d) {
                let _ = f.sync_all();
            }
        }
        self.committed = true;
        Ok(())
    }
}

impl Drop for Outputs {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for t in &self.targets {
            if let Some(tmp) = &t.tmp {
                let _ = std::fs::remove_file(tmp);
            }
        }
        for d in self.created_dirs.iter().rev() {
            let _ = std::fs::remove_dir(d);
        }
    }
}

/// Writes one file through a one-output transaction.
pub fn write_atomic(target: &Path, contents: &[u8]) -> Result<()> {
    let mut out = Outputs::new();
    out.bytes(target, contents)?;
    out.commit()
}

/// Checks that `path` (what the user typed for `flag`) names a readable
/// regular file, before the work: a directory, a missing file or an
/// unreadable one is a user error naming the flag and the path.
pub fn check_input_file(flag: &str, path: &Path) -> Result<()> {
    match std::fs::metadata(path) {
        Ok(m) if m.is_dir() => Err(path_error(
            path,
            format!("is a directory, expected a file ({flag})"),
        )),
        Ok(_) => File::open(path)
            .map(|_| ())
            .map_err(|e| path_error(path, format!("cannot be read ({flag}): {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(Error::NotFound {
            path: path.to_path_buf(),
            hint: format!(" ({flag})"),
        }),
        Err(e) => Err(path_error(path, format!("cannot be read ({flag}): {e}"))),
    }
}

/// Checks, before the work, that `dir` (what the user typed for `flag`) can
/// be an output directory: an existing directory that can be written, or a
/// path whose nearest existing ancestor is one (the rest is created when the
/// outputs are committed). Writability is probed with a temporary file named
/// like every memkin temporary, removed at once.
pub fn check_output_dir(flag: &str, dir: &Path) -> Result<()> {
    if dir.as_os_str().is_empty() {
        return Err(path_error(
            dir,
            format!("empty path: {flag} expects a directory"),
        ));
    }
    let mut probe_in = dir;
    loop {
        match std::fs::metadata(probe_in) {
            Ok(m) if m.is_dir() => break,
            Ok(_) if probe_in == dir => {
                return Err(path_error(
                    dir,
                    format!("is not a directory: {flag} names the directory the outputs go in"),
                ));
            }
            Ok(_) => {
                return Err(path_error(
                    dir,
                    format!("{} is not a directory ({flag})", probe_in.display()),
                ));
            }
            Err(_) => match probe_in.parent() {
                Some(p) if !p.as_os_str().is_empty() => probe_in = p,
                _ => {
                    probe_in = Path::new(".");
                    break;
                }
            },
        }
    }
    let probe = probe_in.join(temp_file_name("probe"));
    match File::create(&probe) {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            Ok(())
        }
        Err(e) => Err(path_error(
            dir,
            format!(
                "cannot be written ({flag}): {} refuses new files: {e}",
                probe_in.display()
            ),
        )),
    }
}

/// How an earlier path that resolves to the same file as `target` was spelt,
/// as " (SPELLING)", or nothing when it was spelt the same.
fn alias(shown: &Path, target: &Path) -> String {
    if shown == target {
        String::new()
    } else {
        format!(" ({})", shown.display())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partials(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("partial"))
            .collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_appears_until_commit_and_all_appear_after() {
        let d = tempfile::tempdir().unwrap();
        let (a, b) = (d.path().join("a.txt"), d.path().join("sub/b.txt"));
        let mut out = Outputs::new();
        out.text(&a, "A").unwrap();
        out.text(&b, "B").unwrap();
        assert!(!a.exists() && !b.exists());
        out.commit().unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "A");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "B");
        assert!(partials(d.path()).is_empty());
    }

    #[test]
    fn a_dropped_transaction_leaves_nothing_not_even_its_directories() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("new/deeper/a.npy");
        {
            let mut out = Outputs::new();
            out.npy(&a, vec![1.0f32, 2.0], &[2]).unwrap();
        }
        assert!(!d.path().join("new").exists());
        assert!(partials(d.path()).is_empty());
    }

    #[test]
    fn a_failing_later_output_leaves_the_earlier_ones_uncommitted() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a.txt");
        std::fs::write(&a, "old").unwrap();
        let r = (|| {
            let mut out = Outputs::new();
            out.text(&a, "new")?;
            out.with_path(&d.path().join("b.png"), |_| {
                Err(Error::Internal("plot failed".into()))
            })?;
            out.commit()
        })();
        assert!(r.is_err());
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "old");
        assert_eq!(partials(d.path()), Vec::<String>::new());
        assert!(!d.path().join("b.png").exists());
    }

    #[test]
    fn an_input_is_refused_as_output_whatever_its_spelling() {
        let d = tempfile::tempdir().unwrap();
        let x = d.path().join("x.npy");
        std::fs::write(&x, "data").unwrap();
        let link = d.path().join("link.npy");
        std::os::unix::fs::symlink(&x, &link).unwrap();
        let hard = d.path().join("hard.npy");
        std::fs::hard_link(&x, &hard).unwrap();
        let dotted = d.path().join(".").join("x.npy");
        for t in [&x, &link, &hard, &dotted] {
            let mut out = Outputs::new();
            out.input(&x);
            let e = out.text(t, "overwrite").unwrap_err();
            assert!(e.is_user_error(), "{e}");
            assert!(e.to_string().contains("input of this command"), "{e}");
        }
        assert_eq!(std::fs::read_to_string(&x).unwrap(), "data");
        assert!(partials(d.path()).is_empty());
    }

    #[test]
    fn two_outputs_on_one_file_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("o.npy");
        let mut out = Outputs::new();
        out.text(&a, "features").unwrap();
        let e = out.text(&d.path().join("./o.npy"), "status").unwrap_err();
        assert!(e.to_string().contains("another output"), "{e}");
        drop(out);
        assert!(!a.exists());
    }

    #[test]
    fn directories_devices_and_dangling_links_are_refused() {
        let d = tempfile::tempdir().unwrap();
        let dangling = d.path().join("dangling");
        std::os::unix::fs::symlink(d.path().join("nowhere"), &dangling).unwrap();
        let file = d.path().join("f");
        std::fs::write(&file, "").unwrap();
        for (t, what) in [
            (d.path().to_path_buf(), "directory"),
            (PathBuf::from("/dev/null"), "not a regular file"),
            (dangling, "dangling"),
            (file.join("under"), "not a directory"),
        ] {
            let mut out = Outputs::new();
            let e = out.text(&t, "x").unwrap_err();
            assert!(e.is_user_error(), "{e}");
            assert!(e.to_string().contains(what), "{t:?}: {e}");
        }
        assert!(
            !std::fs::metadata("/dev/null")
                .unwrap()
                .file_type()
                .is_file()
        );
    }

    #[test]
    fn a_link_to_a_regular_file_is_written_through() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real.csv");
        std::fs::write(&real, "old").unwrap();
        let link = d.path().join("link.csv");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            std::fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "new");
    }

    #[test]
    fn stale_temporaries_of_dead_processes_are_removed_live_ones_kept() {
        let d = tempfile::tempdir().unwrap();
        let host = host_tag();
        // A pid above the kernel's maximum (4194304) never runs.
        let dead = d
            .path()
            .join(format!("{PARTIAL_PREFIX}4194999.{host}-a.npy"));
        let old_style = d.path().join(".a.npy.partial-4194999");
        let mine = d.path().join(temp_file_name("b.npy"));
        let alive = d.path().join(format!("{PARTIAL_PREFIX}1.{host}-c.npy")); // init runs
        let other_host = d
            .path()
            .join(format!("{PARTIAL_PREFIX}4194999.ffffffff-d.npy"));
        for p in [&dead, &old_style, &mine, &alive, &other_host] {
            std::fs::write(p, "x").unwrap();
        }
        write_atomic(&d.path().join("e.txt"), b"e").unwrap();
        assert!(!dead.exists() && !old_style.exists());
        assert!(mine.exists() && alive.exists() && other_host.exists());
    }
}
