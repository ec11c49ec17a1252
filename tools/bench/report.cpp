// The report: each measurement's median round, the speed and memory ratios, and the table printed on a terminal.
#include <algorithm>
#include <iomanip>
#include <string>
#include <utility>

#include "bench.h"

namespace deformer::bench {

json median_round(const std::vector<json>& rounds) {
  std::vector<std::pair<double, size_t>> rates;
  json all = json::array();
  for (size_t i = 0; i < rounds.size(); ++i) {
    rates.emplace_back(rounds[i].value("questions_per_s", 0.0), i);
    all.push_back(rates.back().first);
  }
  std::sort(rates.begin(), rates.end());
  json chosen = rounds[rates[(rates.size() - 1) / 2].second];
  if (rounds.size() > 1) chosen["questions_per_s_by_round"] = all;
  return chosen;
}

void add_runs_and_ratios(json& report, const std::vector<std::vector<json>>& runs,
                         const std::vector<std::vector<json>>& references, int rounds) {
  json full_run, matmul;
  for (const auto& measurement : runs) {
    json run = median_round(measurement);
    if (run["mode"] == "full") full_run = run;
    if (run.contains("matmul_peak")) {
      matmul = run["matmul_peak"];
      run["upper_layers"]["fraction_of_matmul_peak"] = run["upper_layers"]["tflop_s"].get<double>() / matmul["tflop_s"].get<double>();
      run.erase("matmul_peak");
    }
    report["runs"].push_back(run);
  }
  for (const auto& measurement : references) report["references"].push_back(median_round(measurement));
  report["rounds"] = rounds;
  if (!matmul.is_null()) report["matmul_peak"] = matmul;
  // With rounds, each speed ratio also round by round (a drifting machine moves both sides of a round together).
  json by_round = json::object();
  auto ratio_by_round = [&](const std::string& name, const std::vector<json>& of, const std::vector<json>& to) {
    if (rounds < 2) return;
    for (size_t i = 0; i < of.size() && i < to.size(); ++i)
      by_round[name].push_back(of[i]["questions_per_s"].get<double>() / to[i]["questions_per_s"].get<double>());
  };
  const std::vector<json>* full_rounds = nullptr;
  for (const auto& m : runs)
    if (m.front()["mode"] == "full") full_rounds = &m;
  for (size_t i = 0; i < runs.size(); ++i) {
    const json& r = report["runs"][i];
    if (r["mode"] != "deformer") continue;
    const std::string k = (r["states"] == "resident" ? "resident_k" : "k") + std::to_string(r["k"].get<int>());
    const double qps = r["questions_per_s"].get<double>();
    for (size_t j = 0; j < references.size(); ++j) {
      const json& ref = report["references"][j];
      if (!ref.value("available", false)) continue;
      const std::string name = "deformer_" + k + "_vs_" + ref["reference"].get<std::string>();
      report["ratios"][name] = qps / ref["questions_per_s"].get<double>();
      ratio_by_round(name, runs[i], references[j]);
    }
    if (full_run.is_null()) continue;
    report["ratios"]["deformer_" + k + "_vs_full"] = qps / full_run["questions_per_s"].get<double>();
    ratio_by_round("deformer_" + k + "_vs_full", runs[i], *full_rounds);
    if (r.contains("cuda")) {
      const auto peak_ratio = [&](const char* field) {
        return double(r["cuda"][field].get<int64_t>()) / full_run["cuda"][field].get<int64_t>();
      };
      report["ratios"]["deformer_" + k + "_question_memory_vs_full"] = peak_ratio("question_time_peak_bytes");
      report["ratios"]["deformer_" + k + "_question_reserved_memory_vs_full"] = peak_ratio("question_time_reserved_peak_bytes");
    } else {
      report["ratios"]["deformer_" + k + "_question_memory_vs_full"] =
          double(r["question_time_rss_bytes"].get<int64_t>()) / full_run["question_time_rss_bytes"].get<int64_t>();
    }
    if (r.contains("requested_bytes_per_question") && full_run.contains("requested_bytes_per_question"))
      report["ratios"]["deformer_" + k + "_requested_bytes_vs_full"] =
          r["requested_bytes_per_question"].get<double>() / full_run["requested_bytes_per_question"].get<double>();
  }
  if (!full_run.is_null())
    for (const auto& ref : report["references"])
      if (ref.value("available", false))
        report["ratios"]["full_vs_" + ref["reference"].get<std::string>()] =
            full_run["questions_per_s"].get<double>() / ref["questions_per_s"].get<double>();
  if (!by_round.empty()) report["ratios_by_round"] = by_round;
  for (const auto& p : report["paired"])
    report["ratios"]["deformer_k" + std::to_string(p["k"].get<int>()) + "_vs_full_call_by_call"] = p["deformer_vs_full"];
}

void print_table(const json& r, std::ostream& os) {
  const auto& m = r["model"];
  os << "deformer-bench: " << r["device"].get<std::string>() << ", " << r["dtype"].get<std::string>() << ", threads "
     << r["threads"] << ", batch " << r["batch"] << ", " << r["workload"]["questions"] << " SQuAD dev questions; model "
     << m["layers"] << " layers, hidden " << m["hidden_size"] << (m["random_weights"].get<bool>() ? " (random weights)" : "") << "\n";
  os << std::left << std::setw(22) << "run" << std::right << std::setw(12) << "questions/s" << std::setw(11) << "p50 ms"
     << std::setw(11) << "p99 ms" << std::setw(10) << "TFLOP/s" << std::setw(13) << "peak RSS MB" << std::setw(14)
     << "question MB" << "\n";
  auto row = [&](const std::string& name, const json& x) {
    os << std::left << std::setw(22) << name << std::right << std::fixed << std::setprecision(2) << std::setw(12)
       << x.value("questions_per_s", 0.0) << std::setw(11) << x["latency_ms"].value("p50", 0.0) << std::setw(11)
       << x["latency_ms"].value("p99", 0.0) << std::setw(10) << std::setprecision(3) << x.value("achieved_tflop_s", 0.0)
       << std::setprecision(0) << std::setw(13) << x.value("rss_peak_bytes", 0) / 1e6 << std::setw(14)
       << (x.contains("cuda") ? x["cuda"].value("question_time_peak_bytes", 0) : x.value("question_time_rss_bytes", 0)) / 1e6
       << "\n";
  };
  for (const auto& x : r["runs"])
    row(x["mode"].get<std::string>() + (x.contains("k") ? " k=" + std::to_string(x["k"].get<int>()) : "") +
            (x.value("states", "") == "resident" ? " resident" : ""),
        x);
  for (const auto& x : r["references"]) {
    if (x.value("available", false)) row("ref " + x["reference"].get<std::string>(), x);
    else os << "ref " << x["reference"].get<std::string>() << ": unavailable (" << x.value("reason", "") << ")\n";
  }
  for (const auto& [name, value] : r["ratios"].items()) {
    os << "  " << name << ": " << std::setprecision(2) << value.get<double>() << "x";
    if (r.contains("ratios_by_round") && r["ratios_by_round"].contains(name)) {
      os << " (by round:";
      for (const auto& x : r["ratios_by_round"][name]) os << " " << x.get<double>();
      os << ")";
    }
    os << "\n";
  }
  for (const auto& b : r["cache_build"]) os << "  cache build k=" << b["k"] << ": " << std::setprecision(1) << b["windows_per_s"].get<double>() << " windows/s\n";
  for (const auto& x : r["runs"]) {
    os << "  phases of " << x["mode"].get<std::string>() << (x.contains("k") ? " k=" + std::to_string(x["k"].get<int>()) : "")
       << (x.value("states", "") == "resident" ? " resident" : "") << " (ms per pass):";
    for (const char* phase : {"tokenize", "lower_layers", "documents", "cache_read", "upper_layers", "layers", "decode"})
      if (x["phases_ms_per_pass"].contains(phase))
        os << " " << phase << " " << std::setprecision(1) << x["phases_ms_per_pass"][phase].get<double>();
    os << "\n";
    if (x.contains("resident"))
      os << "  resident cache: " << std::setprecision(0) << x["resident"]["bytes"].get<double>() / 1e6 << " MB on the device, loaded in "
         << std::setprecision(2) << x["resident"]["seconds_to_load"].get<double>() << " s\n";
  }
  for (const auto& x : r["runs"])
    if (x.contains("cache_read"))
      os << "  cache read k=" << x["k"] << ": " << std::setprecision(1) << x["cache_read"]["us_per_window"].get<double>()
         << " us/window (" << std::setprecision(2) << 100 * x["cache_read"]["fraction_of_question_time"].get<double>()
         << "% of question time); upper layers " << std::setprecision(2) << x["upper_layers"]["tflop_s"].get<double>()
         << " TFLOP/s (" << std::setprecision(0) << 100 * x["upper_layers"]["fraction_of_matmul_peak"].get<double>() << "% of the matmul peak)\n";
}

}  // namespace deformer::bench
