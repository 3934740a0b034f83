//! Files in and out of the operator commands: an export written under a
//! temporary name and renamed when complete, gzipped by its name; an import
//! read from a file or stdin, gzipped or not; a progress bar on stderr.

use std::{
    fs::{File, OpenOptions},
    io::{self, BufRead, BufReader, BufWriter, Read, Write},
    os::unix::fs::OpenOptionsExt,
    path::Path,
};

use anyhow::Context;
use flate2::{Compression, bufread::MultiGzDecoder, write::GzEncoder};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::super::{
    Admin,
    transfer::{ExportSummary, ImportTarget},
};

/// How the platform audit log names the CLI.
use super::explain;

/// Exports to `path` (or stdout). A file is written under a temporary name
/// and renamed when complete, so a failed export never leaves a file that
/// looks like a backup. Returns the summary of an export to a file.
pub(super) async fn export_to(
    admin: &Admin,
    slug: &str,
    path: Option<&Path>,
    gzip: bool,
) -> anyhow::Result<Option<ExportSummary>> {
    let progress = progress_bar("rows");
    let gzip = gzip || path.is_some_and(|path| path.extension().is_some_and(|ext| ext == "gz"));
    let Some(path) = path.filter(|path| path != &Path::new("-")) else {
        let mut out = Sink::new(Box::new(io::stdout().lock()), gzip);
        let summary = admin
            .export_tenant(slug, &mut out, &progress, None)
            .await
            .map_err(explain)?;
        out.finish().context("could not write the export")?;
        progress.finish_and_clear();
        eprintln!(
            "exported {} ({} rows)",
            summary.tenant.slug,
            summary.rows.values().sum::<u64>()
        );
        return Ok(None);
    };
    let partial = path.with_file_name(format!(
        ".{}.partial",
        path.file_name()
            .map(|name| name.to_string_lossy())
            .unwrap_or_default()
    ));
    // Owner-only (it holds password hashes), and never through a link
    // someone planted under the temporary name.
    let file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&partial)
        .with_context(|| {
            format!(
                "could not create {} (left by an interrupted export? remove it)",
                partial.display()
            )
        })?;
    let mut out = Sink::new(Box::new(BufWriter::new(file.try_clone()?)), gzip);
    let outcome = admin
        .export_tenant(slug, &mut out, &progress, None)
        .await
        .map_err(explain);
    // On disk before anyone purges the tenant on the strength of this file.
    let written = outcome.and_then(|summary| {
        out.finish()
            .and_then(|()| file.sync_all())
            .context("could not write the export")?;
        Ok(summary)
    });
    let summary = match written {
        Ok(summary) => summary,
        Err(error) => {
            let _ = std::fs::remove_file(&partial);
            return Err(error);
        }
    };
    if let Err(error) = std::fs::rename(&partial, path) {
        let _ = std::fs::remove_file(&partial);
        return Err(error)
            .with_context(|| format!("could not move the export to {}", path.display()));
    }
    // The rename itself on disk too: a purge may follow at once.
    let directory = path
        .parent()
        .filter(|dir| !dir.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(directory)
        .and_then(|dir| dir.sync_all())
        .with_context(|| format!("could not flush {}", directory.display()))?;
    progress.finish_and_clear();
    eprintln!("exported {} to {}", summary.tenant.slug, path.display());
    Ok(Some(summary))
}

/// Where an export goes: plain or gzipped.
enum Sink {
    Plain(Box<dyn Write>),
    Gzip(GzEncoder<Box<dyn Write>>),
}

impl Sink {
    fn new(out: Box<dyn Write>, gzip: bool) -> Self {
        if gzip {
            Self::Gzip(GzEncoder::new(out, Compression::default()))
        } else {
            Self::Plain(out)
        }
    }

    /// Writes everything out, including the gzip trailer, reporting errors
    /// that dropping would swallow.
    fn finish(self) -> io::Result<()> {
        match self {
            Self::Plain(mut out) => out.flush(),
            Self::Gzip(encoder) => encoder.finish()?.flush(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Self::Plain(out) => out.write(bytes),
            Self::Gzip(out) => out.write(bytes),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Plain(out) => out.flush(),
            Self::Gzip(out) => out.flush(),
        }
    }
}

pub(super) async fn import_from(
    admin: &Admin,
    path: &Path,
    target: ImportTarget<'_>,
) -> anyhow::Result<crate::admin::transfer::ImportSummary> {
    let (input, size): (Box<dyn Read>, Option<u64>) = if path == Path::new("-") {
        (Box::new(io::stdin().lock()), None)
    } else {
        let file =
            File::open(path).with_context(|| format!("could not open {}", path.display()))?;
        let size = file.metadata().ok().map(|metadata| metadata.len());
        (Box::new(file), size)
    };
    let mut input = BufReader::new(input);
    let gzipped = input
        .fill_buf()
        .context("could not read the export")?
        .starts_with(&[0x1f, 0x8b]);
    let progress = progress_bar("bytes");
    let mut reader: Box<dyn BufRead> = if gzipped {
        Box::new(BufReader::new(MultiGzDecoder::new(input)))
    } else {
        if let Some(size) = size {
            progress.set_length(size);
        }
        Box::new(input)
    };
    let summary = admin
        .import_tenant(&mut reader, target, &progress, None)
        .await
        .map_err(explain)?;
    progress.finish_and_clear();
    for domain in &summary.skipped_domains {
        eprintln!(
            "not imported: custom domain {domain} (it stays with the original tenant; add another with `tenantry domains add`)"
        );
    }
    Ok(summary)
}

/// A progress bar on stderr, drawn only when stderr is a terminal.
fn progress_bar(unit: &str) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    let template =
        format!("{{spinner}} [{{elapsed_precise}}] {{wide_bar}} {{pos}}/{{len}} {unit} ({{eta}})");
    if let Ok(style) = ProgressStyle::with_template(&template) {
        bar.set_style(style);
    }
    bar
}
