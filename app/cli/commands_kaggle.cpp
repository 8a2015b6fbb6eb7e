// whisker-cli kaggle files | download | submit | submissions | login
#include "commands.h"
#include "terminal_progress.h"

#include "whisker/common/archive.h"
#include "whisker/common/errors.h"
#include "whisker/common/hash.h"
#include "whisker/data/dataset.h"
#include "whisker/project/project_lock.h"
#include "whisker/project/runs.h"
#include "whisker/kaggle/client.h"
#include "whisker/kaggle/submission_check.h"
#include "whisker/kaggle/submission_history.h"

#include <fmt/format.h>

#include <iostream>
#include <unistd.h>

namespace fs = std::filesystem;

namespace whisker::cli {

namespace {

struct KaggleArgs {
    std::string endpoint;
    double poll_interval = 5.0;
};

kaggle::Client make_client(const KaggleArgs& k, bool quiet) {
    kaggle::Credentials c = kaggle::require_credentials();
    if (!quiet)
        for (const auto& w : c.warnings) fmt::print(stderr, "warning: {}\n", w);
    kaggle::ClientOptions o;
    o.endpoint = k.endpoint;
    o.poll_interval_seconds = k.poll_interval;
    return kaggle::Client(std::move(c), o);
}

std::string human_bytes(std::uint64_t n) {
    if (n >= 1ull << 30) return fmt::format("{:.1f} GiB", static_cast<double>(n) / (1ull << 30));
    if (n >= 1ull << 20) return fmt::format("{:.1f} MiB", static_cast<double>(n) / (1ull << 20));
    if (n >= 1ull << 10) return fmt::format("{:.1f} KiB", static_cast<double>(n) / (1ull << 10));
    return fmt::format("{} B", n);
}

// A submission's source in words for the history ("ensemble #5 (mean) of 2", "resnet34 at
// 224 px, run #3"), and an ensemble's members, one line each.
void describe_source(const fs::path& project, int run, kaggle::SubmissionRecord& record) {
    const auto r = run > 0 ? project::read_run(project, run) : std::nullopt;
    if (!r) return;
    if (r->kind == project::RunKind::Ensemble) {
        record.model = fmt::format("ensemble #{} ({}) of {}", r->number, r->ensemble_mix, r->members.size());
        for (const auto& m : r->members)
            record.members.push_back(fmt::format("{} {} at {} px, weight {:g}", m.source, m.arch, m.size, m.weight));
    } else if (!r->arch.empty()) {
        record.model = fmt::format("{} at {} px, run #{}", r->arch, r->size, r->number);
    }
}

}  // namespace

void add_kaggle_commands(CLI::App& app, GlobalOptions& global) {
    static KaggleArgs k;
    auto* kg = app.add_subcommand("kaggle", "Download competition data and submit predictions to Kaggle");
    kg->require_subcommand(1);
    kg->add_option("--endpoint", k.endpoint, "API origin (default: $KAGGLE_API_ENDPOINT or https://api.kaggle.com)");

    static std::string files_comp;
    auto* files = kg->add_subcommand("files", "List a competition's data files");
    files->add_option("COMPETITION", files_comp)->required();
    files->callback([&global] {
        auto client = make_client(k, global.quiet);
        for (const auto& f : client.list_files(files_comp)) fmt::print("{:<40} {:>12}\n", f.name, human_bytes(f.total_bytes));
    });

    static std::string dl_comp, dl_dir;
    static bool dl_force = false, dl_extract = false;
    auto* download = kg->add_subcommand("download", "Download a competition's data (resumable) as <COMPETITION>.zip");
    download->add_option("COMPETITION", dl_comp)->required();
    download->add_option("-p,--path", dl_dir, "Folder (default: <kaggle config>/competitions/<COMPETITION>)");
    download->add_flag("--force", dl_force, "Download even when a complete, current copy is there");
    download->add_flag("--extract", dl_extract, "Also extract it (nested zips too) into the folder");
    download->callback([&global] {
        auto client = make_client(k, global.quiet);
        const fs::path dir = dl_dir.empty() ? kaggle::config_dir() / "competitions" / dl_comp : fs::path(dl_dir);
        if (!global.quiet) {
            std::uint64_t total = 0;
            const auto list = client.list_files(dl_comp);
            for (const auto& f : list) total += f.total_bytes;
            fmt::print("{}: {} files, {}\n", dl_comp, list.size(), human_bytes(total));
        }
        TerminalProgress bar(!global.quiet && isatty(2));
        const auto r = client.download_all(dl_comp, dir, dl_force, bar.callback());
        bar.finish();
        if (!global.quiet)
            fmt::print("{} {} ({})\n", r.skipped ? "Up to date:" : "Downloaded", r.file.string(), human_bytes(r.bytes));
        if (dl_extract) {
            ExtractOptions eo;
            eo.progress = bar.callback();
            auto er = extract_archive(r.file, dir, eo);
            std::size_t nested = 0;
            for (const auto& f : er.files)
                if (f.extension() == ".zip" && f.parent_path() == dir) {
                    extract_archive(f, dir, eo);
                    ++nested;
                }
            bar.finish();
            if (!global.quiet)
                fmt::print("Extracted {} files ({} already there){}\n", er.written + er.already_intact, er.already_intact,
                           nested ? fmt::format(" and {} nested archives", nested) : "");
        }
    });

    static std::string sub_comp, sub_file, sub_message, sub_sample, sub_project;
    static bool sub_no_wait = false, sub_no_check = false;
    auto* submit = kg->add_subcommand("submit", "Check a submission file, upload it, and wait for its score");
    submit->add_option("COMPETITION", sub_comp)->required();
    submit->add_option("-f,--file", sub_file, "The submission (.csv or .csv.gz)")->required();
    submit->add_option("-m,--message", sub_message, "Description shown on Kaggle")->required();
    submit->add_option("--sample", sub_sample, "sample_submission.csv to check against");
    submit->add_option("--project", sub_project, "Project whose sample_submission.csv to check against");
    submit->add_flag("--no-check", sub_no_check, "Skip the check against the sample submission");
    submit->add_flag("--no-wait", sub_no_wait, "Do not wait for the score");
    submit->add_option("--poll-interval", k.poll_interval, "Seconds between checks of the score")->capture_default_str();
    submit->callback([&global] {
        // Submitting into a project's history writes the project: refused up front while
        // another program writes it, held only while the history is written (not while Kaggle
        // scores, which can take minutes).
        if (!sub_project.empty()) project::ProjectLock::acquire(sub_project, "submit").release();
        fs::path sample = sub_sample;
        if (sample.empty() && !sub_project.empty()) {
            const fs::path candidate = fs::path(sub_project) / "sample_submission.csv";
            if (fs::exists(candidate)) sample = candidate;
        }
        if (sample.empty()) {
            // A submission written into a project lies beside the project's sample.
            const fs::path beside = fs::absolute(sub_file).parent_path() / "sample_submission.csv";
            if (fs::exists(beside)) sample = beside;
        }
        if (!sample.empty() && !sub_no_check) {
            const auto check = kaggle::check_submission(sub_file, sample);
            if (!check.ok())
                throw UserError("'" + sub_file + "' does not match " + sample.string() + ":\n" + check.summary(),
                                "fix the file (nothing was uploaded), or pass --no-check to send it anyway");
            if (!global.quiet) fmt::print("Checked {} rows against {}\n", check.rows, sample.string());
        } else if (!global.quiet && !sub_no_check) {
            fmt::print("warning: no sample_submission.csv to check against (use --sample or --project)\n");
        }
        auto client = make_client(k, global.quiet);
        kaggle::SubmissionRecord record;
        record.date = kaggle::local_timestamp();
        record.file = fs::absolute(sub_file).string();
        record.message = sub_message;
        // With --project the submission is a run of the project (kind "submission"): the file
        // and its SHA-256, the run that wrote it, the message and Kaggle's verdict.
        std::unique_ptr<project::RunRecorder> run;
        project::RunKaggle sent{sub_comp, sub_message, {}, "UPLOADING", {}, {}, {}};
        if (!sub_project.empty()) {
            record.source_run = project::run_that_wrote(sub_project, sha256_file(sub_file));
            describe_source(sub_project, record.source_run, record);
            data::Dataset dataset;
            try {
                dataset = data::Dataset::load(sub_project);
            } catch (const std::exception&) {   // a project without a dataset still records the run
            }
            std::string command = "whisker-cli";
            for (const auto& a : global.args) command += " " + a;
            run = std::make_unique<project::RunRecorder>(sub_project, "whisker-cli");
            record.run = run->begin(project::RunKind::Submission, dataset, command);
            run->set_device("Kaggle");
            run->set_parent(record.source_run);
            run->set_submission(sub_file);
            run->set_kaggle(sent);
        }
        TerminalProgress bar(!global.quiet && isatty(2));
        std::string ref;
        try {
            ref = client.submit(sub_comp, sub_file, sub_message, bar.callback());
        } catch (const std::exception& e) {
            if (run) {
                sent.status = "UPLOAD FAILED";
                sent.error = e.what();
                run->set_kaggle(sent);
                run->end(e.what());
            }
            throw;
        }
        bar.finish();
        if (!global.quiet)
            fmt::print("Submitted {}{}{}\n", sub_file, ref.empty() ? "" : " (ref " + ref + ")",
                       record.run ? fmt::format("; recorded as run #{}", record.run) : "");
        // With --project, the submission joins the project's history (the workbench shows it).
        record.ref = ref;
        record.status = "PENDING";
        sent.ref = ref;
        sent.status = "PENDING";
        if (run) run->set_kaggle(sent);
        auto remember = [&] {
            if (sub_project.empty()) return;
            const auto lock = project::ProjectLock::acquire(sub_project, "submit");
            auto history = kaggle::SubmissionHistory::load(sub_project);
            history.competition = sub_comp;
            history.upsert(record);
            history.save(sub_project);
        };
        remember();
        if (sub_no_wait) {
            if (run) run->end();   // its score comes in later (the workbench's Refresh scores)
            return;
        }
        std::string last_status;
        const auto s = client.wait_for_result(sub_comp, ref, sub_message, [&](const kaggle::Submission& s) {
            if (s.status != last_status && !global.quiet) fmt::print("status: {}\n", s.status);
            last_status = s.status;
        });
        record.status = s.status;
        record.public_score = s.public_score;
        record.private_score = s.private_score;
        record.error = s.error_description;
        if (record.ref.empty()) record.ref = s.ref;
        remember();
        if (run) {
            sent = {sub_comp, sub_message, record.ref, s.status, s.public_score, s.private_score, s.error_description};
            run->set_kaggle(sent);
            run->end(s.status == "ERROR" ? "Kaggle could not score the submission: " + s.error_description : std::string());
        }
        if (s.status == "ERROR")
            throw UserError("Kaggle could not score the submission: " +
                            (s.error_description.empty() ? std::string("no reason given") : s.error_description));
        fmt::print("Public score: {}\n", s.public_score.empty() ? "(not shown)" : s.public_score);
    });

    static std::string list_comp;
    auto* subs = kg->add_subcommand("submissions", "List your submissions to a competition, with scores");
    subs->add_option("COMPETITION", list_comp)->required();
    subs->callback([&global] {
        auto client = make_client(k, global.quiet);
        const auto list = client.submissions(list_comp);
        fmt::print("{:<21} {:<9} {:>12} {:>12}  {}\n", "date", "status", "public", "private", "description");
        for (const auto& s : list)
            fmt::print("{:<21} {:<9} {:>12} {:>12}  {}{}\n", s.date, s.status, s.public_score, s.private_score, s.description,
                       s.error_description.empty() ? "" : " — " + s.error_description);
        if (list.empty()) fmt::print("(no submissions yet)\n");
    });

    static std::string login_user, login_key;
    auto* login = kg->add_subcommand("login", "Save your Kaggle username and API key as kaggle.json (mode 0600)");
    login->add_option("--username", login_user, "Kaggle username")->required();
    login->add_option("--key", login_key, "API key; '-' or nothing reads it from standard input");
    login->callback([&global] {
        std::string key = login_key;
        if (key.empty() || key == "-") {
            if (isatty(0)) fmt::print(stderr, "API key: ");
            std::getline(std::cin, key);
        }
        const fs::path p = kaggle::write_kaggle_json(login_user, key);
        if (!global.quiet) fmt::print("Saved {} (readable only by you)\n", p.string());
    });
}

}  // namespace whisker::cli
