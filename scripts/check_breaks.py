"""Each deliberate break listed in issues #12 (section 3) and #20 (section 6, and one per item of 1-5),
and of the commit protocol of #21, made one at a time: the named tests must fail.

Run from the repository root with the venv: `.venv/bin/python scripts/check_breaks.py [name ...]`. Every
break is undone after its tests ran (also when they are interrupted); exit 1 names any break no test caught.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

T = "kline_assets_tests/"
MUTANTS = [  # (what breaks, file, text, replacement, tests that must fail)
    ("corrupt manifest read as none", "kline_assets/store/manifest.py",
     'raise BadInput(f"{where} is not a kline-assets manifest ({exc})") from None', "return None",
     [T + "store/test_dataset.py"]),
    ("verify misses missing days", "kline_assets/store/verify.py",
     'report.problems.append(Problem("missing_day",', "(print(", [T + "store/test_verify.py"]),
    ("verify misses incomplete days", "kline_assets/store/verify.py",
     'report.problems.append(Problem("incomplete",', "(print(", [T + "store/test_verify.py"]),
    ("corrupt complete chunk skipped", "kline_assets/binance/days.py",
     "intact = raw is not None and len(raw) == entry.bytes and sha256_bytes(raw) == entry.sha256",
     "intact = raw is not None",
     [T + "defs/test_assets.py::test_a_corrupt_complete_chunk_is_fetched_again_on_a_rerun"]),
    ("gaps dropped on extension", "kline_assets/binance/days.py",
     "gaps = [list(g) for g in entry.exchange_gaps]", "gaps = []", [T + "binance/test_days.py"]),
    ("no guard on extension", "kline_assets/binance/days.py",
     'table = table.filter(pc.greater(table[column], old[column][-1]))', "pass",
     [T + "binance/test_days.py"]),
    ("sensor ignores CLI runs", "kline_assets/defs/sensors.py",
     "for name in tagged_datasets(tags) if name in by_name", "for name in []",
     [T + "defs/test_sensors.py::test_sensor_skips_a_dataset_that_a_command_line_run_is_writing"]),
    ("long Retry-After waited out", "kline_assets/binance/client.py",
     "if wait > MAX_RETRY_AFTER_S:", "if False:",
     [T + "binance/test_client.py::test_a_retry_after_beyond_the_cap_fails_at_once_and_blocks_this_origin"]),
    ("today from the exchange clock alone", "kline_assets/defs/live.py",
     "today = min(zone.local_date(now_ms), zone.local_date(int(time.time() * 1000)))",
     "today = zone.local_date(now_ms)",
     [T + "defs/test_sensors.py::test_today_is_never_ahead_of_this_machines_date"]),
    ("no closed horizon", "kline_assets/binance/paging.py",
     "stop = min(end_ms, closed_horizon(now_ms))", "stop = end_ms", [T + "binance/test_paging.py"]),
    ("no close_time filter", "kline_assets/binance/paging.py",
     "unclosed = [r[0] for r in raw if r[6] >= now_ms]", "unclosed = []", [T + "binance/test_paging.py"]),
    ("no sha256 check", "kline_assets/store/checks.py", "if sha != entry.sha256:", "if False:",
     [T + "defs/test_assets.py::test_verify_job_fails_on_one_flipped_byte"]),
    ("failure commits nothing staged", "kline_assets/defs/writer.py",
     "except BaseException:  # a day failed", "except ZeroDivisionError:  # a day failed",
     [T + "defs/test_assets.py::test_a_range_failing_on_day_k_keeps_and_records_exactly_the_days_before"]),
    ("no commit on time", "kline_assets/defs/writer.py",
     "or time.monotonic() - self.opened >= COMMIT_EVERY_S)", ")",
     [T + "defs/test_assets.py::test_days_are_recorded_while_the_run_goes_on"]),
    # issue #20, section 6
    ("exchangeInfo without symbols replaces the listing", "kline_assets/binance/listing.py",
     "        if not listing.symbols:\n", "        if False:\n",
     [T + "binance/test_listing.py::test_an_exchange_info_listing_no_symbol_keeps_the_cached_listing"]),
    ("explicit pair never retired", "kline_assets/binance/listing.py", "for market in set(MARKETS) - markets:",
     "for market in []:",
     [T + "binance/test_listing.py::test_an_explicit_pair_the_listing_shows_no_longer_trading_is_retired"]),
    ("sensor asks for retired datasets", "kline_assets/defs/sensors.py",
     "stores = [local.store(spec) for spec in settings.live_pairs]",
     "stores = [local.store(spec) for spec in settings.pairs]",
     [T + "binance/test_listing.py::test_an_explicit_pair_the_listing_shows_no_longer_trading_is_retired"]),
    ("CHECKSUM without a digest used unverified", "kline_assets/binance/archive.py",
     'raise ArchiveUnusable(f"{name}.CHECKSUM holds no sha256")',
     "expected = hashlib.sha256(data or b'').hexdigest()",
     [T + "binance/test_hostile.py::test_an_archive_day_that_cannot_be_trusted_goes_to_rest"]),
    ("cross-check samples the oldest days", "kline_assets/binance/crosscheck.py",
     "return sorted(random.sample(days, min(n, len(days))))", "return sorted(days)[:n]",
     [T + "binance/test_crosscheck.py"]),
    ("shared weight count falls back a minute", "kline_assets/binance/limiter.py",
     "            if stored > minute:  # another process", "            if False:  # another process",
     [T + "binance/test_client.py::test_the_shared_count_never_falls_back_to_an_earlier_minute"]),
    ("dict of Arrow tables served as pandas", "kline_assets/defs/io_manager.py",
     "    if typing.get_origin(annotation) is dict:\n", "    if False:\n",
     [T + "defs/test_downstream.py::test_a_range_gets_a_dict_per_partition"]),
    ("open_dataset serves unverified chunks", "kline_assets/api.py",
     "    for _ in verified_tables(store, entries):  # each chunk checked (several read at once)\n        pass\n",
     "",
     [T + "test_api.py::test_a_corrupt_chunk_is_refused_naming_the_day"]),
    ("live ignores a partly overlapping run", "kline_assets/defs/sensors.py",
     "if a <= today.isoformat() and first.isoformat() <= b]",
     "if a <= first.isoformat() and today.isoformat() <= b]",
     [T + "defs/test_sensors.py::test_sensor_skips_while_a_partly_overlapping_run_is_queued_or_in_progress"]),
    ("live ignores queued runs", "kline_assets/defs/sensors.py", "IN_PROGRESS = [dg.DagsterRunStatus.QUEUED, ",
     "IN_PROGRESS = [",
     [T + "defs/test_sensors.py::test_sensor_skips_while_a_partly_overlapping_run_is_queued_or_in_progress"]),
    ("--all exits 0 when a market fails", "kline_assets/cli/commands.py",
     'f"under {settings.data_root}")\n    if not outcome.success:', 'f"under {settings.data_root}")\n    if False:',
     [T + "cli/test_all.py::test_a_failing_market_fails_the_command"]),
    ("a market process dying counts as success", "kline_assets/defs/runs.py",
     "        outcome = RunOutcome(result.success, result.run_id, *first_error(result))\n    return _then",
     "        outcome = RunOutcome(True, result.run_id, *first_error(result))\n    return _then",
     [T + "cli/test_all.py::test_a_market_process_that_dies_or_a_ctrl_c_never_ends_in_success"]),
    ("kill -9 leaves the market processes running", "kline_assets/defs/runs.py",
     "    end_with_parent()\n", "",
     [T + "cli/test_all.py::test_kill_9_of_backfill_all_ends_its_market_process_and_a_rerun_completes"]),
    ("a one-sided index range overwrites _all", "kline_assets/store/combine.py",
     "ranged = from_index is not None or to_index is not None",
     "ranged = from_index is not None and to_index is not None",
     [T + "store/test_combine.py::test_a_one_sided_index_range_never_overwrites_all"]),
    ("combine not rebuilt after a rewrite", "kline_assets/store/combine.py",
     "sources = [[e.index, e.sha256] for e in entries]", "sources = [[e.index] for e in entries]",
     [T + "store/test_combine.py::test_a_chunk_rewritten_at_the_same_index_rebuilds_the_combined_file"]),
    ("status says no longer trading without a listing", "kline_assets/cli/commands.py",
     's["trading"] = None if listing is None', 's["trading"] = False if listing is None',
     [T + "binance/test_listing.py::test_status_says_nothing_of_trading_without_a_cached_listing"]),
    # issue #22
    ("the Postgres weight count ignores the cap", "kline_assets/binance/pgwindow.py",
     "ok = weight == 0 or (blocked <= time.time() and used + weight <= cap)", "ok = True",
     [T + "binance/test_client.py::test_processes_plan_from_one_shared_minute_count"]),
    ("run workers count weight on their machine only", "kline_assets/defs/resources.py",
     "self._shared_url = shared_budget_url(context.instance)", "self._shared_url = None",
     [T + "cli/test_postgres.py::test_two_machines_behind_one_ip_share_the_weight_budget_through_postgres"]),
    ("a ban stays with the worker that got it", "kline_assets/binance/pgwindow.py",
     "SET blocked_until = GREATEST(blocked_until, %s)", "SET blocked_until = blocked_until + 0 * %s",
     [T + "binance/test_client.py::test_a_retry_after_reaches_every_worker_of_a_postgres_instance"]),
    ("a step process outlives a killed command", "kline_assets/defs/runs.py",
     "    end_with_parent()\n", "",
     [T + "cli/test_all.py::test_kill_9_of_backfill_all_ends_its_market_process_and_a_rerun_completes"]),
    # issue #20, sections 1-5
    ("a writer keeps its own start", "kline_assets/store/dataset.py",
     "for item in self._replan(staged, manifest, refused):", "for item in staged:",
     [T + "store/test_dataset.py::test_a_writer_planned_against_another_start_is_renumbered_or_refused"]),
    ("verify blind to misnumbering", "kline_assets/store/verify.py",
     'report.problems.append(Problem("misnumbered",', "(print(", [T + "store/test_verify.py"]),
    ("no total deadline", "kline_assets/binance/http.py",
     "sock_token = self._watchdog.watch(conn.sock, deadline, scope)", "sock_token = None",
     [T + "binance/test_hostile.py::test_a_dripping_server_fails_within_the_deadline"]),
    ("no body cap", "kline_assets/binance/http.py", "if size > limits.max_bytes:", "if False:",
     [T + "binance/test_hostile.py::test_memory_stays_bounded_whatever_the_server_sends"]),
    ("no inflate cap", "kline_assets/binance/archive.py",
     "if members[0].file_size > MAX_CSV_BYTES:", "if False:",
     [T + "binance/test_hostile.py::test_an_archive_day_that_cannot_be_trusted_goes_to_rest"]),
    ("rows beyond the window kept", "kline_assets/binance/paging.py", "if ask <= r[0] < min(stop, last) and",
     "if ask <= r[0] and", [T + "binance/test_hostile.py::test_rows_beyond_the_window_are_dropped"]),
    ("pages in any order taken", "kline_assets/binance/client.py", "if last is not None and row[0] <= last:",
     "if False:", [T + "binance/test_hostile.py::test_impossible_pages_are_never_stored"]),
    ("impossible values fetched", "kline_assets/binance/days.py",
     "            problem = value_problem(table, kind)\n",
     "            problem = None\n", [T + "binance/test_hostile.py::test_impossible_pages_are_never_stored"]),
    ("impossible values pass sanity", "kline_assets/store/checks.py",
     '"impossible_values": impossible_values(table, signed),', "",
     [T + "store/test_checks.py::test_impossible_values_fail_sanity_and_name_the_minute"]),
    ("archive duplicates used", "kline_assets/binance/archive.py", "    problem = value_problem(table, kind)\n",
     "    problem = None\n", [T + "binance/test_hostile.py::test_an_archive_day_that_cannot_be_trusted_goes_to_rest"]),
    ("an empty archive file trusted", "kline_assets/binance/archive.py",
     'raise ArchiveUnusable(f"{name} holds no rows")', "return pa.schema(list(COLUMNS)).empty_table()",
     [T + "binance/test_hostile.py::test_an_archive_day_that_cannot_be_trusted_goes_to_rest"]),
    ("an unreachable archive asked for every day", "kline_assets/binance/archive.py",
     "if self._unreachable_in_a_row >= UNREACHABLE_AFTER and not self.given_up:", "if False:",
     [T + "binance/test_hostile.py::test_an_unreachable_archive_is_given_up_once_per_run"]),
    ("a stop waits for slow requests", "kline_assets/defs/fleet.py",
     "        for stream in list(self.streams):\n            stream.stop()", "        pass",
     [T + "binance/test_hostile.py::test_a_signal_stops_a_backfill_on_a_dripping_server_within_5s"]),
    ("SIGTERM exits 130", "kline_assets/cli/main.py", "        if signal.SIGTERM in seen:", "        if False:",
     [T + "binance/test_hostile.py::test_a_signal_stops_a_backfill_on_a_dripping_server_within_5s"]),
    ("non-ASCII pairs accepted", "kline_assets/settings.py",
     "return 0 < len(text) <= MAX_SYMBOL and text.isascii() and text.isalnum()", "return text.isalnum()",
     [T + "cli/test_input.py"]),
    ("a plain verify writes", "kline_assets/store/verify.py", "    manifest = store.manifest()\n    entries",
     "    store.update(lambda m: True)\n    manifest = store.manifest()\n    entries",
     [T + "cli/test_input.py::test_verify_only_reads_and_repair_on_a_read_only_root_is_one_line"]),
    # issue #21: the archive on object storage
    ("S3 manifest put without a condition", "kline_assets/store/s3.py",
     'condition = {"IfMatch": token} if token is not None else {"IfNoneMatch": "*"}', "condition = {}",
     [T + "store/test_dataset.py::test_put_if_is_a_compare_and_swap"]),
    ("local manifest put without a compare", "kline_assets/store/backend.py", "            if current != token:",
     "            if False:", [T + "store/test_dataset.py::test_put_if_is_a_compare_and_swap"]),
    ("a lost commit given up", "kline_assets/store/dataset.py",
     "            time.sleep(random.uniform(0, min(0.2, 0.005 * 2 ** min(attempt, 6))))", "            return manifest",
     [T + "store/test_dataset.py::test_two_processes_writing_different_days_lose_nothing"]),
    ("young unlisted objects collected", "kline_assets/store/dataset.py",
     "if now - o.modified > grace_s]", "if True]",
     [T + "store/test_dataset.py::test_a_crash_before_the_commit_leaves_only_unlisted_objects"]),
    ("a rewritten day overwrites its object", "kline_assets/store/paths.py",
     'return f"chunk_{index:06d}_{day:%Y%m%d}_{sha256[:8]}.parquet"',
     'return f"chunk_{index:06d}_{day:%Y%m%d}.parquet"',
     [T + "store/test_dataset.py::test_a_rewritten_day_gets_a_new_object_and_never_overwrites_the_listed_one"]),
    ("a reader trusts the manifest it holds", "kline_assets/store/reader.py",
     "    if fresh is not None and fresh.file != entry.file:", "    if False:",
     [T + "store/test_dataset.py::test_a_reader_holding_an_old_entry_reads_the_new_one_once"]),
    ("a failed multipart upload left open", "kline_assets/store/s3.py", "            sink.abort()\n",
     "            pass\n", [T + "store/test_dataset.py::test_a_streamed_object_appears_whole_or_not_at_all"]),
    ("young unlisted objects reported", "kline_assets/store/verify.py",
     "        if now - found.modified <= GRACE_S:", "        if False:",
     [T + "store/test_verify.py::test_unlisted_objects_are_problems_only_after_the_grace_period"]),
    # issue #34, section 8: breaks the suite did not notice
    ("S3 listing reads the first page only", "kline_assets/store/s3.py",
     '            for page in self.client.get_paginator("list_objects_v2").paginate(Bucket=self.bucket,\n'
     '                                                                               Prefix=self._key(prefix)):',
     '            for page in [self.client.list_objects_v2(Bucket=self.bucket, Prefix=self._key(prefix))]:',
     [T + "store/test_dataset.py::test_a_listing_reads_every_page"]),
    ("a retried commit names days twice", "kline_assets/store/dataset.py",
     "accepted.clear(), replaced.clear(), refused.clear()", "replaced.clear(), refused.clear()",
     [T + "store/test_dataset.py::test_a_commit_that_lost_the_swap_merges_again_and_names_each_day_once"]),
    ("verify blind to insane days", "kline_assets/store/verify.py",
     "names = [INTEGRITY] if not outcomes[INTEGRITY].passed else [CONTINUITY, SANITY]",
     "names = [INTEGRITY] if not outcomes[INTEGRITY].passed else [CONTINUITY]",
     [T + "store/test_verify.py::test_a_stored_day_with_impossible_or_unclosed_rows_is_insane"]),
    ("a row closing at the fetch time counts as closed", "kline_assets/store/checks.py",
     '"unclosed_rows": closes >= fetched_before_ms,', '"unclosed_rows": closes > fetched_before_ms,',
     [T + "store/test_checks.py::test_a_row_closing_at_the_fetch_time_is_unclosed"]),
    ("a short body accepted", "kline_assets/binance/http.py",
     "if response.length or time.monotonic() >= deadline", "if time.monotonic() >= deadline",
     [T + "binance/test_hostile.py::test_impossible_pages_are_never_stored"]),
    ("an archive 429 is final", "kline_assets/binance/archive.py",
     "if answer.status < 500 and answer.status != 429:", "if answer.status < 500:",
     [T + "binance/test_archive.py::test_an_archive_429_is_waited_out_and_the_day_still_comes_from_the_archive"]),
    ("the archive breaker counts failures not in a row", "kline_assets/binance/archive.py",
     "        with self._lock:\n            self._unreachable_in_a_row = 0", "        pass",
     [T + "binance/test_archive.py::test_only_failures_in_a_row_give_the_archive_up"]),
    ("a day failing one ERROR check is put", "kline_assets/binance/days.py",
     "            if wrong:  # the last line of defence", "            if len(wrong) > 1:  # the last line of defence",
     [T + "binance/test_days.py::test_a_day_failing_one_error_check_is_never_put"]),
    ("run_resource refuses two changed fields only", "kline_assets/defs/resources.py",
     "    if changed:\n", "    if len(changed) > 1:\n",
     [T + "defs/test_resources.py::test_a_run_config_that_would_write_elsewhere_or_cut_other_days_fails_and_writes_"
      "nothing"]),
    ("settings hourly and combine_after_backfill swapped", "kline_assets/settings.py",
     'Setting("hourly", "KLINE_HOURLY", "", "The example downstream asset klines_1h", parse_flag),\n'
     '    Setting("combine_after_backfill",',
     'Setting("combine_after_backfill", "KLINE_HOURLY", "", "The example downstream asset klines_1h", parse_flag),'
     '\n    Setting("hourly",',
     [T + "defs/test_component.py", T + "test_settings.py"]),
    ("a relayed Ctrl-C exits 1", "kline_assets/cli/main.py", "relayed = RELAY is not None and RELAY in seen",
     "relayed = False", [T + "test_interrupts.py"]),
    # issue #35: COIN-M, funding, the archive recheck
    ("COIN-M paged as USD-M", "kline_assets/binance/paging.py", "if source.market.pages_from_end else stop",
     "if False else stop",
     [T + "binance/test_paging.py::test_coinm_pages_ask_windows_no_longer_than_their_limit_and_confirm_empty_ones"]),
    ("funding in the weight budget", "kline_assets/binance/client.py",
     'page = self._call("GetFundingRate", params, 1, budget=self.funding_limiter)',
     'page = self._call("GetFundingRate", params, 1)',
     [T + "binance/test_client.py::test_funding_pages_count_in_their_own_limiter_and_broken_ones_never_are_events"]),
    ("a missing funding event unnamed", "kline_assets/store/checks.py",
     "for i in np.flatnonzero(steps > allowed[:-1]):", "for i in []:",
     [T + "cli/test_funding.py::test_a_missing_event_is_stored_as_sent_and_named_by_verify"]),
    ("a replaced archive file unnoticed", "kline_assets/binance/recheck.py",
     'if ",".join(sums) != entry.source_sha256:', "if False:", [T + "binance/test_recheck.py"]),
]


def main(wanted: list[str]) -> int:
    missed = []
    for name, path, old, new, tests in MUTANTS:
        if wanted and not any(w in name for w in wanted):
            continue
        if not caught(path, old, new, tests, name):
            missed.append(name)
    return 1 if missed else 0


def caught(path: str, old: str, new: str, tests: list[str], name: str) -> bool:
    p = Path(path)
    src = p.read_text()
    assert src.count(old) == 1, (name, old)
    p.write_text(src.replace(old, new))
    try:
        r = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-n", "0", "-p", "no:cacheprovider",
                            "-o", "timeout=120",
                            "-o", "timeout_method=thread",  # a break that hangs a test ends it too
                            *tests], capture_output=True, text=True)
    finally:
        p.write_text(src)
    last = (r.stdout.strip().splitlines() or ["(no output)"])[-1]
    print(f"{'caught' if r.returncode else 'MISSED'} {name}: {last}", flush=True)
    return r.returncode != 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
