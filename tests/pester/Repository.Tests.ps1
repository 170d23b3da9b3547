# The promises the repository makes about itself: README's two commands, CI running the README's test command, and a
# manifest that exports exactly the cmdlets the module has.

BeforeAll {
    Import-Module (Join-Path $env:GALLIUM_REPO 'tests/pester/TestHelpers.psm1') -Force
    Import-GalliumModule
    $readme = Get-Content (Join-Path $env:GALLIUM_REPO 'README.md') -Raw
    $commands = @([regex]::Matches($readme, '(?m)^dotnet tool restore && dotnet pwsh \./build\.ps1 -Task \w+$') | ForEach-Object Value)
}

Describe 'README and CI' {
    It 'README gives exactly two commands: one that builds and runs the main job, one that runs all the tests' {
        $commands | Should -Be @('dotnet tool restore && dotnet pwsh ./build.ps1 -Task Demo', 'dotnet tool restore && dotnet pwsh ./build.ps1 -Task Test')
    }

    It '.ci/run calls the README''s test command' {
        $ci = Get-Content (Join-Path $env:GALLIUM_REPO '.ci/run')
        $ci | Should -Contain $commands[1]
    }
}

Describe 'The module manifest' {
    BeforeAll { $manifest = Import-PowerShellDataFile (Join-Path $env:GALLIUM_REPO 'Gallium.PciPassthrough.psd1') }

    It 'exports explicitly exactly the cmdlets the assembly defines' {
        $defined = [Gallium.PciPassthrough.GalliumCmdlet].Assembly.GetExportedTypes() |
            Where-Object { -not $_.IsAbstract -and $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false) } |
            ForEach-Object { $a = $_.GetCustomAttributes([System.Management.Automation.CmdletAttribute], $false)[0]; "$($a.VerbName)-$($a.NounName)" }
        @($manifest.CmdletsToExport | Sort-Object) | Should -Be @($defined | Sort-Object)
        @((Get-Module Gallium.PciPassthrough).ExportedCmdlets.Keys | Sort-Object) | Should -Be @($defined | Sort-Object)
    }

    It 'is for PowerShell Core, loads its format and types files, and its version is the assemblies'' version' {
        $manifest.CompatiblePSEditions | Should -Be @('Core')
        $manifest.FormatsToProcess | Should -Contain 'Gallium.PciPassthrough.format.ps1xml'
        $manifest.TypesToProcess | Should -Contain 'Gallium.PciPassthrough.types.ps1xml'
        [Gallium.PciPassthrough.GalliumCmdlet].Assembly.GetName().Version.ToString(3) | Should -Be $manifest.ModuleVersion
    }

    It 'is MIT-licensed: LICENSE in the repository and in the module folder, LicenseUri below the repository' {
        $license = Get-Content -Raw (Join-Path $env:GALLIUM_REPO 'LICENSE')
        $license | Should -Match '^MIT License'
        $license | Should -Match 'Permission is hereby granted, free of charge'
        Get-Content -Raw (Join-Path (Get-Module Gallium.PciPassthrough).ModuleBase 'LICENSE') | Should -Be $license
        $manifest.PrivateData.PSData.LicenseUri | Should -Be "$($manifest.PrivateData.PSData.ProjectUri)/blob/main/LICENSE"
    }

    It 'has release notes, and a description that states what it needs at run time' {
        $manifest.PrivateData.PSData.ReleaseNotes | Should -Match "^$([regex]::Escape($manifest.ModuleVersion)): "
        $manifest.Description | Should -Match 'libvirt\.so\.0'
        $manifest.Description | Should -Match 'root'
        $manifest.PowerShellVersion | Should -Be '7.4'
    }

    It 'names no HelpInfoURI: the help ships in the module, and the about topic says so' {
        $manifest.Keys | Should -Not -Contain 'HelpInfoURI'
        (Get-Module Gallium.PciPassthrough).HelpInfoUri | Should -BeNullOrEmpty
        Get-Help about_Gallium_PciPassthrough | Out-String | Should -Match 'Update-Help'
    }

    It 'sends Get-Help -Online to each cmdlet''s page in the repository: HelpUri, the page''s online version and the first link agree' {
        $docs = "$($manifest.PrivateData.PSData.ProjectUri)/blob/main/docs/en-US"
        $maml = [xml](Get-Content -Raw (Join-Path (Get-Module Gallium.PciPassthrough).ModuleBase 'en-US/Gallium.PciPassthrough.dll-Help.xml'))
        foreach ($c in (Get-Module Gallium.PciPassthrough).ExportedCmdlets.Values) {
            $c.HelpUri | Should -Be "$docs/$($c.Name).md" -Because "$($c.Name) carries HelpUri on its [Cmdlet] attribute"
            Test-Path (Join-Path $env:GALLIUM_REPO "docs/en-US/$($c.Name).md") | Should -BeTrue
            # Get-Help -Online opens the first related link that has a URI, before it looks at HelpUri.
            $command = $maml.helpItems.command | Where-Object { $_.details.name -eq $c.Name }
            $first = @($command.relatedLinks.navigationLink | Where-Object { $_.uri }) | Select-Object -First 1
            $first.uri | Should -Be $c.HelpUri
        }
    }

    It 'every cmdlet declares its output type' {
        foreach ($c in (Get-Module Gallium.PciPassthrough).ExportedCmdlets.Values) {
            $c.OutputType.Count | Should -BeGreaterThan 0 -Because "$($c.Name) must declare [OutputType]"
        }
    }
}
