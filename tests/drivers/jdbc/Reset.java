// pgJDBC (Debian's libpostgresql-jdbc-java) through pgwarden's proxy: four connections on
// a proxy pool of two. pgJDBC sends the JVM's time zone as the startup TimeZone, and
// ApplicationName as a startup application_name once told the server is 9.0 or newer
// (else it SETs it after the login, and RESET ALL undoes that on any server); it checks
// every DateStyle it is told; each connection changes its TimeZone, runs RESET ALL and
// reads TimeZone and application_name back through a prepared statement (server-side
// prepared from its fifth use). Prints "<count> <distinct values>" (test_drivers.py checks).
import java.sql.Connection;
import java.sql.DriverManager;
import java.sql.PreparedStatement;
import java.sql.ResultSet;
import java.sql.Statement;
import java.util.ArrayList;
import java.util.List;
import java.util.Properties;
import java.util.TreeSet;

public class Reset {
    public static void main(String[] args) throws Exception {
        String url = "jdbc:postgresql://127.0.0.1:" + args[0]
            + "/postgres?ApplicationName=jdbcapp&assumeMinServerVersion=15"
            + "&connectTimeout=10&socketTimeout=60";
        Properties props = new Properties();
        props.setProperty("user", "postgres");
        props.setProperty("password", args[1]);
        List<Connection> conns = new ArrayList<>();
        for (int i = 0; i < 4; i++)
            conns.add(DriverManager.getConnection(url, props));
        TreeSet<String> seen = new TreeSet<>();
        int count = 0;
        for (int round = 0; round < 8; round++) {
            for (Connection c : conns) {
                try (Statement s = c.createStatement()) {
                    s.execute("SET TimeZone TO 'Europe/Oslo'");
                    s.execute("RESET ALL");
                }
                try (PreparedStatement ps = c.prepareStatement(
                         "SELECT current_setting('TimeZone'), current_setting('application_name'), ?::int")) {
                    ps.setInt(1, round);
                    try (ResultSet rs = ps.executeQuery()) {
                        rs.next();
                        seen.add(rs.getString(1) + "|" + rs.getString(2));
                        count++;
                    }
                }
            }
        }
        for (Connection c : conns)
            c.close();
        System.out.println(count + " " + String.join(",", seen));
    }
}
