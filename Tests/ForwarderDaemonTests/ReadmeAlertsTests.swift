import Foundation
import Testing
import TestSupport
import Yams

@Suite("README alert rules")
struct ReadmeAlertsTests {
    @Test("the suggested Prometheus rules are valid YAML and use only metrics the daemon exports")
    func alerts() throws {
        let rules = try #require(try Yams.load(yaml: try Readme.snippet("alerts-yaml")) as? [String: Any])
        let groups = try #require(rules["groups"] as? [[String: Any]])
        let alerts = try #require(groups.first?["rules"] as? [[String: Any]])
        #expect(alerts.count >= 4)
        let metricsSource = try Repository.read("Sources/ForwarderDaemon/Metrics.swift")
        for alert in alerts {
            let expr = try #require(alert["expr"] as? String)
            for name in expr.matches(of: /tiktok_forwarder_[a-z_]+/).map({ String($0.output) }) {
                #expect(metricsSource.contains("\"\(name)\""), "\(name) in the README is not a metric the daemon exports")
            }
        }
    }
}
